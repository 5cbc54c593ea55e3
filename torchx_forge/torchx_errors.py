"""Where forge's errors meet the ``torchx`` command line: one line for the user, never a traceback.

Forge's errors are its own (:mod:`torchx_forge.core.errors`); TorchX knows none of them, and
reports only a few types of its own cleanly. Two edges adapt them:

* A component (``forge.sweep``, ``forge.grid``, ``forge.pipeline``) builds its AppDef inside
  :func:`component_errors`, which turns a ForgeError into TorchX's ``ComponentValidationException``:
  the one exception ``torchx run`` reports as "Failed to run component ... got errors" and exit
  code 1, on any scheduler.
* Everything else that runs in the ``torchx`` program (the ``run``, ``status``, ``log``, ``list``
  and ``cancel`` verbs calling the ``slurm_forge`` scheduler) raises ForgeErrors that TorchX does
  not catch. :func:`install_cli_excepthook`, called by ``create_scheduler`` when ``slurm_forge`` is
  created inside the ``torchx`` program (and only then), prints them as ``torchx: error: ...``
  with exit code 1. Any other exception keeps its traceback: that is a bug worth reporting.

Programs that use the scheduler or the Runner directly get the ForgeError itself.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from torchx.specs.api import MalformedAppHandleException, UnknownAppException
from torchx.specs.finder import ComponentValidationException

from torchx_forge.core.errors import ForgeError


@contextmanager
def component_errors() -> Iterator[None]:
    """Inside a component function: a ForgeError (bad arguments, an experiment file that does not
    validate, a state dir the run table cannot be written to) becomes ``ComponentValidationException``."""
    try:
        yield
    except ForgeError as e:
        raise ComponentValidationException(str(e)) from e


def is_user_error(exc: BaseException) -> bool:
    """Errors that are the user's input or their environment, not a bug: shown as one line (a
    state dir on an object store that does not answer is one of them, and so is a malformed app handle)."""
    return isinstance(exc, (ForgeError, MalformedAppHandleException, UnknownAppException))


def in_torchx_cli() -> bool:
    """True inside the ``torchx`` command line program."""
    prog = sys.argv[0] if sys.argv else ""
    return os.path.basename(prog) == "torchx" or prog.endswith(os.path.join("torchx", "cli", "main.py"))


def torchx_verb() -> str:
    """The ``torchx`` subcommand this process runs (``log``, ``status``, ...); "" outside the ``torchx`` program.
    TorchX's own options come before it (``torchx --log_level DEBUG log ...``)."""
    if not in_torchx_cli():
        return ""
    args = iter(sys.argv[1:])
    for arg in args:
        if arg == "--log_level":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return ""


def install_cli_excepthook() -> None:
    """Print ForgeErrors as ``torchx: error: ...`` (exit 1) instead of a traceback.

    ``torchx status``, ``log``, ``list`` and ``run`` (past building the AppDef) catch none of
    them, so without this a cluster that is down would greet the user with a stack trace. Only
    :func:`is_user_error` errors are affected; any other exception still shows its traceback.
    Installed once, by ``create_scheduler`` when it runs inside the ``torchx`` command line.
    """
    if getattr(sys.excepthook, "_forge", False):
        return
    previous_hook = sys.excepthook
    previous_thread_hook = threading.excepthook

    def hook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        if is_user_error(exc):
            # the interpreter still exits with status 1 after an uncaught exception
            print(f"torchx: error: {exc}", file=sys.stderr)
            return
        previous_hook(exc_type, exc, tb)

    def thread_hook(args):  # type: ignore[no-untyped-def]
        # `torchx log` re-raises a log thread's exception in the main thread; keep
        # the thread itself quiet so the user sees the message once.
        if args.exc_value is not None and is_user_error(args.exc_value):
            return
        previous_thread_hook(args)

    hook._forge = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    threading.excepthook = thread_hook
