"""Errors torchx-forge raises for bad input and for Slurm failures.

Every error here is meant to be read by a person: it names the file, key path or
option, what was given, what is allowed, and what to do next. They derive from
torchx's ``ComponentValidationException`` because that is the one exception
``torchx run`` (0.7) turns into a one-line message and exit code 1 instead of a
traceback; :func:`install_cli_excepthook` does the same for the other verbs.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Optional, Sequence

from torchx.specs.api import MalformedAppHandleException, UnknownAppException
from torchx.specs.finder import ComponentValidationException

from torchx_forge.core.formats import NewerFormatError
from torchx_forge.core.storage import StoreError


class ForgeError(ComponentValidationException):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(ForgeError, ValueError):
    """Bad user input: an experiment file key, a runopt, a component argument.

    Args:
        where: the key path, option name or ``file:line`` the problem is at.
        msg: what is wrong and what is expected.
    """

    def __init__(self, where: str, msg: str) -> None:
        self.where = where
        self.msg = msg
        super().__init__(f"{where}: {msg}")


class SlurmError(ForgeError):
    """A Slurm command failed; carries the command and Slurm's own message.

    ``transient``: Slurm's message says the failure may pass (a daemon down, restarting or busy).
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        stderr: str,
        stdout: str = "",
        hint: Optional[str] = None,
        transient: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        self.transient = transient
        self.hint = hint
        super().__init__(self._text())

    @property
    def first_line(self) -> str:
        """The first line of Slurm's message."""
        return ((self.stderr.strip() or self.stdout.strip() or "(no output)").splitlines() or [""])[0]

    def set_hint(self, hint: str) -> None:
        self.hint = hint
        self.args = (self._text(),)

    def _text(self) -> str:
        message = (self.stderr.strip() or self.stdout.strip() or "(no output)").replace("\n", "\n  ")
        text = f"`{self.argv[0]}` failed (exit code {self.returncode}): {message}"
        return f"{text}\n{self.hint}" if self.hint else text


class SlurmNotFoundError(ForgeError):
    """The Slurm command line tools are not on PATH."""

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(
            f"`{command}` not found on PATH: the Slurm client tools are missing.\n"
            "On this machine, start the local test cluster with `scripts/local-slurm up`"
            " (from a torchx-forge checkout); on a real cluster, run from a login node"
            " or load your site's Slurm module."
        )


class UnknownAppError(ForgeError):
    """An app id that slurm_forge has no record of and Slurm does not know."""


def _is_forge(exc: BaseException) -> bool:
    """Errors that are the user's input or their environment, not a bug: shown as one line (a
    state dir on an object store that does not answer is one of them, a file written by a newer
    torchx-forge another)."""
    return isinstance(exc, (ForgeError, StoreError, NewerFormatError, MalformedAppHandleException, UnknownAppException))


def in_torchx_cli() -> bool:
    """True inside the ``torchx`` command line program."""
    prog = sys.argv[0] if sys.argv else ""
    return os.path.basename(prog) == "torchx" or prog.endswith(os.path.join("torchx", "cli", "main.py"))


def install_cli_excepthook() -> None:
    """Print ForgeErrors as ``torchx: error: ...`` (exit 1) instead of a traceback.

    ``torchx status``, ``log``, ``cancel`` and ``list`` catch nothing, so without
    this a cluster that is down would greet the user with a stack trace. Only
    ForgeError is affected; any other exception still shows its traceback, since
    that is a bug worth reporting. Installed once, by ``create_scheduler`` when it
    runs inside the ``torchx`` command line.
    """
    if getattr(sys.excepthook, "_forge", False):
        return
    previous_hook = sys.excepthook
    previous_thread_hook = threading.excepthook

    def hook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        if _is_forge(exc):
            # the interpreter still exits with status 1 after an uncaught exception
            print(f"torchx: error: {exc}", file=sys.stderr)
            return
        previous_hook(exc_type, exc, tb)

    def thread_hook(args):  # type: ignore[no-untyped-def]
        # `torchx log` re-raises a log thread's exception in the main thread; keep
        # the thread itself quiet so the user sees the message once.
        if args.exc_value is not None and _is_forge(args.exc_value):
            return
        previous_thread_hook(args)

    hook._forge = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    threading.excepthook = thread_hook
