"""Which values are secrets: env names that look like credentials are masked in everything forge shows."""

from __future__ import annotations

import re
from typing import Dict, Mapping

_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW(OR)?D", re.IGNORECASE)
MASK = "****"


def is_secret(name: str) -> bool:
    """``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*`` (any case)."""
    return bool(_SECRET.search(name))


def masked(env: Mapping[str, str]) -> Dict[str, str]:
    """``env`` with secret-looking values replaced by :data:`MASK`."""
    return {k: (MASK if is_secret(k) else v) for k, v in env.items()}
