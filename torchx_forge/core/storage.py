"""What can go wrong with a state dir on a URL (an object store such as ``s3://``), in words both sides share.

A store that *answers* says what is wrong in the usual Python way (FileNotFoundError,
PermissionError); these are for a store that does not: an endpoint down, a network fault, a
timeout, or a URL whose scheme has no fsspec backend installed. Both are OSErrors, so every
caller that copes with an unwritable disk copes with them too, and ForgeErrors, so the ``torchx``
command line prints them as one line (:mod:`torchx_forge.core.errors`). Standard library only.
"""

from __future__ import annotations

import os
import re
from typing import Mapping, Optional, Tuple

from torchx_forge.core import envvars
from torchx_forge.core.errors import ForgeError

#: seconds the compute-node side (launcher, companion and wave jobs) keeps trying a store that does not answer
WAIT_ENV = envvars.STORE_WAIT.name
DEFAULT_WAIT = 120.0


class StoreError(ForgeError, OSError):
    """A state, checkpoint or result dir on a URL that forge cannot use: the message names the URL,
    what went wrong and, where it can, what to do."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"{url}: {problem}")
        self.url = url
        self.problem = problem

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> Tuple[type, Tuple[str, str]]:
        return (type(self), (self.url, self.problem))


class StoreUnreachableError(StoreError):
    """The store did not answer (an endpoint down, a network fault, a timeout): worth trying again later."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(url, f"the store did not answer ({cause})")
        self.cause = cause

    def __reduce__(self) -> Tuple[type, Tuple[str, str]]:
        return (type(self), (self.url, self.cause))


_REQUEST_URL = re.compile(r"(https?://[^/\s\"']+)/[^\s\"']*")


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` of a backend's exception (botocore's, aiohttp's ...), with
    the endpoint it names cut to scheme, host and port (the request's own path says nothing more)."""
    text = str(exc).strip().splitlines()
    first = _REQUEST_URL.sub(r"\1", text[0]) if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def store_wait(env: Optional[Mapping[str, str]] = None) -> float:
    """How long (seconds) the node side waits for a store that does not answer: ``$FORGE_STORE_WAIT``, default 120."""
    raw = (os.environ if env is None else env).get(WAIT_ENV, "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_WAIT
    except ValueError:
        return DEFAULT_WAIT
