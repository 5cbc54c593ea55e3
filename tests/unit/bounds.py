"""Refusals of inputs too big to expand: one line, at once.

``HANG`` is a hang guard, not a speed target (speed is measured in benchmarks/): the refusals are
instant, while expanding what they refuse takes minutes, and ten tests share 2 cores.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest

from torchx_forge.errors import ConfigError

#: seconds
HANG = 10.0


def refused(make: Callable[[], object], *expected: str, errors: tuple = (ConfigError,)) -> str:
    """``make()`` raises one of ``errors`` at once, in one line holding every ``expected``; returns it."""
    start = time.monotonic()
    with pytest.raises(errors) as err:
        make()
    assert time.monotonic() - start < HANG
    text = str(err.value)
    assert "\n" not in text, text
    for part in expected:
        assert part in text, text
    return text
