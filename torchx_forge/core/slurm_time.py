"""Slurm time strings, parsed the way sbatch reads ``--time``.

Accepts every form ``sbatch --time`` accepts: ``M``, ``M:S``, ``H:M:S``, ``D-H``,
``D-H:M``, ``D-H:M:S`` (fields may exceed their usual range: ``90:00`` is 90
minutes, ``48:00:00`` is two days) and ``UNLIMITED``/``INFINITE``. planit's
``strptime("%H:%M:%S")`` rejected most of these; this does not.
"""

from __future__ import annotations

import re
from typing import Optional

_TIME_RE = re.compile(r"^(?:(?P<days>\d+)-)?(?P<rest>\d+(?::\d+){0,2})$")


def parse_slurm_time(text: str) -> Optional[int]:
    """Seconds in a Slurm time string; None for UNLIMITED. Raises ValueError if malformed."""
    s = text.strip()
    if s.upper() in ("UNLIMITED", "INFINITE"):
        return None
    m = _TIME_RE.match(s)
    if not m:
        raise ValueError(
            f"{text!r} is not a Slurm time; use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
        )
    parts = [int(p) for p in m.group("rest").split(":")]
    if m.group("days") is not None:
        # with days: D-H, D-H:M, D-H:M:S
        h, mi, sec = (parts + [0, 0])[:3]
        return ((int(m.group("days")) * 24 + h) * 60 + mi) * 60 + sec
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    h, mi, sec = parts
    return (h * 60 + mi) * 60 + sec


def format_duration(seconds: Optional[float]) -> str:
    """``5400`` -> ``'1:30:00'``, ``93600`` -> ``'1-02:00:00'``, None -> ``'unlimited'``."""
    if seconds is None:
        return "unlimited"
    total = int(round(seconds))
    days, rem = divmod(total, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}" if days else f"{h}:{m:02d}:{s:02d}"
