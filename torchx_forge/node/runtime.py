"""Helpers for training scripts: resume, save, and stop cleanly when warned.

Users' programs import them as :mod:`torchx_forge.runtime` (a re-export of this module)::

    from torchx_forge import runtime

    stop = runtime.install_warning_handler()   # USR1 (the pre-timeout warning) and SIGTERM
    state = runtime.load_latest(torch.load)    # None on the first attempt
    step = state["step"] if state else 0
    while step < total:
        train_one_step()
        step += 1
        runtime.save(lambda path: torch.save({"step": step, ...}, path), step)
        if stop.is_set():
            runtime.exit_for_requeue()         # exit code 75: "saved, run me again"

Searches add :func:`report` (intermediate metrics; True when the trial's budget is reached).

Everything reads the environment slurm_forge sets (see :mod:`torchx_forge.node.contract`):
it works the same under local_cwd, where nothing ever warns.
Standard library only (fsspec for URL checkpoint dirs).
"""

from __future__ import annotations

import builtins
import os
import shutil
import signal
import sys
import threading
from typing import IO, Any, Callable, Dict, List, Optional

from torchx_forge.core import envvars, search_report
from torchx_forge.core.policy import REQUEUE_EXIT
from torchx_forge.node.checkpoint import commit, latest_checkpoint, step_of
from torchx_forge.node.handoff import split_result_dirs

__all__ = [
    "attempt", "checkpoint_dir", "commit_checkpoint", "exit_for_requeue", "finished", "install_warning_handler",
    "load_latest", "open_path", "report", "resume_from", "save", "upstream_result_dirs",
]


def checkpoint_dir() -> str:
    """This run's checkpoint directory (FORGE_CHECKPOINT_DIR; ./checkpoints outside forge)."""
    return os.environ.get(envvars.CHECKPOINT_DIR.name) or os.path.abspath("checkpoints")


def attempt() -> int:
    """0 on the first attempt, then 1, 2 ... on retries."""
    return int(os.environ.get(envvars.ATTEMPT.name, "0") or 0)


def resume_from() -> Optional[str]:
    """The checkpoint the launcher chose to resume from (FORGE_RESUME_FROM), else the latest one found."""
    return os.environ.get(envvars.RESUME_FROM.name) or latest_checkpoint(checkpoint_dir())


def load_latest(loader: Callable[[str], Any]) -> Any:
    """``loader(path)`` of the checkpoint to resume from, or None when starting fresh."""
    path = resume_from()
    return loader(path) if path else None


def open_path(path: str, mode: str = "rb") -> IO[Any]:
    """Open a checkpoint (or any file) given as a local path or an fsspec URL such as
    ``s3://bucket/ckpt/step_3.pt``: FORGE_CHECKPOINT_DIR, FORGE_RESUME_FROM and
    FORGE_INPUT_CHECKPOINT are URLs when the checkpoint dir is on an object store. Close it (a
    ``with`` block) to finish a write: on an object store that is the one atomic PUT."""
    if "://" in path and not path.startswith("file://"):
        import fsspec  # noqa: PLC0415 (only for URLs: the program may not need it otherwise)

        opened: IO[Any] = fsspec.open(path, mode).open()  # type: ignore[no-untyped-call]
        return opened
    return builtins.open(path.replace("file://", "", 1), mode)


def save(writer: Callable[[str], None], step: int, name: str = "step_{step}.pt", keep: int = 2) -> str:
    """Write a checkpoint atomically and make it the latest: ``writer(tmp_path)``, rename, commit.

    On an object store ``writer`` gets the final URL (one PUT is atomic; open it with
    :func:`open_path`). ``keep`` most recent ``step_*`` checkpoints are kept in a local
    directory (0 keeps all). Returns the path.
    """
    directory = checkpoint_dir()
    final = f"{directory.rstrip('/')}/{name.format(step=step)}"
    if "://" in directory:
        writer(final)  # object stores: one PUT is atomic
    else:
        os.makedirs(directory, exist_ok=True)
        tmp = final + ".tmp"
        _remove(tmp)  # half written by an attempt killed in the writer
        writer(tmp)
        _replace(tmp, final)
    commit_checkpoint(final, step)
    if keep and "://" not in directory:
        _prune(directory, name, keep)
    return final


def commit_checkpoint(path: str, step: Optional[int] = None) -> None:
    """Record ``path`` (a checkpoint in this run's checkpoint dir) as the one to resume from.

    For programs that save their own way (Lightning, Accelerate, ``torch.save``): after the
    checkpoint is complete, call this and resume picks it whatever the other names in the
    directory (it writes ``checkpoint_state.json``, atomically).
    """
    commit(checkpoint_dir(), path, step)


def _replace(tmp: str, final: str) -> None:
    """Rename ``tmp`` to ``final``. A directory there already (this step saved by an attempt killed
    before it committed it: the resumed attempt runs the step again) is replaced too, which a
    rename alone refuses ("Directory not empty")."""
    if os.path.isdir(final) and not os.path.islink(final):
        old = f"{final}.old.{os.getpid()}.tmp"
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def _remove(path: str) -> None:
    """Remove a file or a directory tree, if there is one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _prune(directory: str, name: str, keep: int) -> None:
    """All but the ``keep`` most recent ``step_*`` checkpoints (files or directories) of ``name``'s pattern go."""
    prefix = name.split("{step}", maxsplit=1)[0]
    steps = sorted((s, n) for n in os.listdir(directory)
                   if n.startswith(prefix) and not n.endswith(".tmp") and (s := step_of(n)) is not None)
    for _, n in steps[:-keep]:
        try:
            _remove(os.path.join(directory, n))
        except OSError:
            pass


def install_warning_handler(*extra: int) -> threading.Event:
    """An Event set when the pre-timeout warning (FORGE_WARN_SIGNAL, default USR1) or SIGTERM arrives.

    Check it between steps; save and call :func:`exit_for_requeue`. Without this
    handler the warning's default action ends the program, which slurm_forge
    also treats as "resume from the last checkpoint".
    """
    event = threading.Event()
    name = os.environ.get(envvars.WARN_SIGNAL.name, "USR1")
    sigs = {getattr(signal, f"SIG{name}", signal.SIGUSR1), signal.SIGTERM, *extra}

    def handler(signum: int, _frame: object) -> None:
        print(f"torchx-forge runtime: got {signal.Signals(signum).name}, will save and stop", file=sys.stderr, flush=True)
        event.set()

    for sig in sigs:
        signal.signal(sig, handler)
    return event


def upstream_result_dirs() -> List[str]:
    """Pipelines: the result dirs of the upstream runs that finished (``FORGE_UPSTREAM_RESULT_DIRS``),
    split right when they are URLs (``s3://...``, whose ``://`` a plain split on ``:`` would cut)."""
    return split_result_dirs(os.environ.get(envvars.UPSTREAM_RESULT_DIRS.name, ""))


def finished() -> None:
    """Say this run is complete, so an exit after the pre-timeout warning is not taken for an
    interruption (shell: ``touch "$FORGE_DONE_FILE"``). Call it once the work is done, before exiting.

    Without it, a program warned before its time limit that saved a checkpoint and exited (with
    any code, 0 included) is resumed from that checkpoint on its next attempt.
    """
    path = os.environ.get(envvars.DONE_FILE.name)
    if path:
        with open(path, "w"):
            pass


def exit_for_requeue() -> None:
    """Exit with code 75: the launcher requeues the task, which resumes from the latest checkpoint."""
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(REQUEUE_EXIT)


def report(step: int, **metrics: float) -> bool:
    """Record intermediate metrics of a search trial at ``step``; True when the program should stop now.

    Under a search (``search:`` in an experiment file, ``forge.search``), the values go to this
    trial's own report file (``$FORGE_SEARCH_REPORT``, replaced atomically: a temporary file, then a
    rename; one PUT on an object store), which the search's decision step reads. True once ``step``
    reaches the trial's current budget (``$FORGE_SEARCH_BUDGET``: the rung an ASHA or Hyperband
    trial runs to now): save a checkpoint (:func:`save`) and exit 0; if the trial is promoted it
    is resumed from that checkpoint with a larger budget, so no step runs twice. Random and TPE
    trials run to the end. Outside a search (neither variable set) it does nothing and returns
    False, so the same program runs unchanged under random, TPE, ASHA and without forge::

        for step in range(start + 1, total + 1):
            loss = train_one_step()
            if runtime.report(step, loss=loss):
                runtime.save(write_checkpoint, step)
                break

    Only rank 0 writes (``$RANK``, else ``$SLURM_PROCID``); every rank gets the same answer. A
    trial's objective is the last value of the search's metric it reported (report the final one
    too); a trial that ends without reporting it counts as failed. Final metrics for
    ``torchx forge results`` go, as for any run, to ``metrics.json`` in ``$FORGE_RESULT_DIR``
    (see :mod:`torchx_forge.results.metrics`).

    Args:
        step: the step just finished (a whole number >= 0, increasing).
        metrics: name -> number (anything ``float()`` takes: a 0-d tensor too).
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"report(step, ...): step must be a whole number >= 0, got {step!r}")
    values = {}
    for name, value in metrics.items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"report(step, {name}=...): expected a number, got {type(value).__name__} {value!r}") from None
    path = os.environ.get(envvars.SEARCH_REPORT.name)
    if path and values and _rank() == 0:
        _write_report(path, step, values)
    raw = os.environ.get(envvars.SEARCH_BUDGET.name, "").strip()
    return raw.isdigit() and step >= int(raw)


def _rank() -> int:
    raw = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    return int(raw) if raw.isdigit() else 0


def _write_report(path: str, step: int, values: Dict[str, float]) -> None:
    """Add ``values`` at ``step`` to the report file, replacing it whole (readers never see half a file)."""
    try:
        with open_path(path, "r") as f:
            steps = search_report.loads(f.read(), path)
    except FileNotFoundError:
        steps = {}
    steps.setdefault(step, {}).update(values)
    text = search_report.dumps(steps)
    if "://" in path and not path.startswith("file://"):
        with open_path(path, "w") as f:  # one PUT: atomic on an object store
            f.write(text)
        return
    path = path.replace("file://", "", 1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with builtins.open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
