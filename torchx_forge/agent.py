"""The login node's side of a command sent from a laptop (``python -m torchx_forge.agent``).

Reads one JSON request on standard input, does what the verb does on a login node (with the
Slurm commands and the state dir there), prints one JSON answer (a followed log: one JSON line
per log line) and ends. The laptop's side is :mod:`torchx_forge.remote.client`.

The request is finished even when the connection drops halfway (the laptop's command killed, the
network gone): the agent ignores SIGHUP and a closed standard output, so a submission it started
ends with its record written; the next command from the laptop reads that record.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Mapping

from torchx.schedulers.api import Stream
from torchx.specs import AppState

from torchx_forge import __version__
from torchx_forge.core.errors import ForgeError, LoginError
from torchx_forge.core.record import asdict
from torchx_forge.remote.client import PROTOCOL
from torchx_forge.remote.wire import app_from_json, describe_to_json
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.slurm.merge import app_state


def _scheduler(req: Mapping[str, Any]) -> SlurmForgeScheduler:
    return SlurmForgeScheduler(str(req.get("session") or "torchx"), state_dir=req.get("state_dir") or None)


def hello(req: Mapping[str, Any]) -> Dict[str, Any]:
    """Who answers: versions, the interpreter, the state dir, and where workspace snapshots go (the
    state dir's ``snapshots/``; ~/.torchx_forge/snapshots when the state dir is a URL)."""
    store = _scheduler(req).records().store
    home = os.path.join(os.path.expanduser("~"), ".torchx_forge")
    snapshots = store.path("snapshots") if store.local else os.path.join(home, "snapshots")
    return {"protocol": PROTOCOL, "version": __version__, "python": sys.executable, "state_dir": store.url_of(),
            "snapshots": snapshots}


def dryrun(req: Mapping[str, Any]) -> Dict[str, Any]:
    info = _scheduler(req).submit_dryrun(app_from_json(req["app"]), dict(req["cfg"]))
    return {"text": str(info)}


def submit(req: Mapping[str, Any]) -> Dict[str, Any]:
    """Submit the app, once its workspace snapshot is here (else ``need_snapshot``: the laptop ships
    it and asks again) and its run tables are written; the answer has the new app's status. The
    outcome is kept under the laptop's token (``remote/<token>.json`` in the state dir) for a laptop
    whose connection closed before the answer came back."""
    snap = str(req.get("snapshot") or "")
    if snap and not os.path.isdir(snap):
        return {"need_snapshot": True}
    sched = _scheduler(req)
    store, token = sched.records().store, str(req.get("token") or "")
    for name, text in (req.get("tables") or {}).items():  # named by their content: one there already is the same
        if not store.exists(f"tables/{name}"):
            store.write_bytes(f"tables/{name}", text.encode())
    if token:
        store.write_json(f"remote/{token}.json", {"state": "submitting", "started": time.time()})
    try:
        info = sched.submit_dryrun(app_from_json(req["app"]), dict(req["cfg"]))
        app_id = sched.schedule(info)
    except Exception as e:
        if token:
            store.write_json(f"remote/{token}.json", {"state": "failed", "error": str(e).splitlines()[0]})
        raise
    if token:
        store.write_json(f"remote/{token}.json", {"state": "submitted", "app_id": app_id})
    found = sched.describe(app_id)
    return {"app_id": app_id, "describe": describe_to_json(found) if found is not None else None}


def describe(req: Mapping[str, Any]) -> Dict[str, Any]:
    sched = _scheduler(req)
    out: Dict[str, Any] = {}
    for app_id in req["app_ids"]:
        found = sched.describe(app_id)
        out[app_id] = describe_to_json(found) if found is not None else None
    return out


def states(req: Mapping[str, Any]) -> Dict[str, Any]:
    """The state and name of each app (for `torchx list` on the laptop), in one Slurm call for all;
    and what became of the submissions whose answer a laptop lost (by token)."""
    sched = _scheduler(req)
    records = sched.records()
    recs = [r for r in (sched.load(i) for i in req["app_ids"]) if r is not None]
    views = sched._gather(records, recs).views
    apps = {r.app_id: {"state": AppState(app_state(views[r.app_id])).name, "name": r.name} for r in recs}
    tokens = {t: records.store.read_json(f"remote/{t}.json") or {"state": "unknown"} for t in req.get("tokens") or ()}
    return {"apps": apps, "tokens": tokens}


def cancel(req: Mapping[str, Any]) -> None:
    _scheduler(req).cancel(req["app_id"])


def retry(req: Mapping[str, Any]) -> List[Any]:
    return [list(x) for x in _scheduler(req).retry(req["app_id"], req.get("states"))]


def budget(req: Mapping[str, Any]) -> List[Any]:
    return list(_scheduler(req).raise_budget(req["app_id"], int(req["trials"])))


def log(req: Mapping[str, Any]) -> None:
    """Print each line as one JSON line, flushed: the laptop shows them as they come."""
    streams = Stream[req["streams"]] if req.get("streams") else None
    lines = _scheduler(req).log_iter(req["app_id"], req["role"], int(req.get("k", 0)), regex=req.get("regex"),
                                     should_tail=bool(req.get("should_tail")), streams=streams)
    for line in lines:
        _send({"line": line})


def expected_start(req: Mapping[str, Any]) -> Dict[str, Any]:
    """When Slurm expects the app's first job to start here (``sbatch --test-only``: nothing is
    submitted), as seconds since the epoch; for a laptop choosing the soonest of several clusters."""
    sched = _scheduler(req)
    job = sched.submit_dryrun(app_from_json(req["app"]), dict(req["cfg"])).request.jobs[0]
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="forge-test-only-", delete=False) as f:
        f.write(job.materialize())
    try:
        argv = job.argv(f.name, hold=False)
        p = subprocess.run([argv[0], "--test-only", *argv[1:]], capture_output=True, text=True, check=False)
    finally:
        os.unlink(f.name)
    m = re.search(r"to start at (\S+)", p.stderr + p.stdout)
    if p.returncode != 0 or not m:
        raise ForgeError(f"`sbatch --test-only` gave no start time: {(p.stderr or p.stdout).strip().splitlines()[:1]}")
    return {"start": time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")), "said": p.stderr.strip()}


def poll(req: Mapping[str, Any]) -> Dict[str, Any]:
    """Records and task views of the apps (`torchx forge watch`), in one Slurm call for all of them."""
    sched = _scheduler(req)
    ids = req["app_ids"]
    if req.get("unfinished"):  # `forge watch` with no handle: the laptop's apps that have not ended
        ids = [i for i in ids if (rec := sched.load(i)) is not None and rec.final is None]
    found, notes = sched.poll(ids)
    return {"apps": [{"record": rec.to_json(), "views": [v.to_json() for v in views]} for rec, views in found],
            "notes": notes}


def cancel_replicas(req: Mapping[str, Any]) -> List[str]:
    return _scheduler(req).cancel_replicas(req["app_id"], req["role"], [int(r) for r in req["replicas"]])


def results(req: Mapping[str, Any]) -> Dict[str, Any]:
    """The runs of an app with their parameters, states and metrics (`torchx forge results`)."""
    rs = importlib.import_module("torchx_forge.results")  # its imports cost every other request 0.1 s
    return asdict(rs.load(_scheduler(req), req["app_id"], req.get("stage")))


OPS: Dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "hello": hello, "dryrun": dryrun, "submit": submit, "describe": describe, "states": states, "cancel": cancel,
    "retry": retry, "log": log, "results": results, "poll": poll, "cancel_replicas": cancel_replicas,
    "expected_start": expected_start, "budget": budget,
}


def _send(obj: Any) -> None:
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):  # the laptop went away: finish what was started regardless
        pass


class _Tolerant(io.TextIOBase):
    """A stream whose writes never fail: progress lines to a laptop that went away are dropped."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        try:
            self.inner.write(text)
            self.inner.flush()
        except (OSError, ValueError):
            pass
        return len(text)


def main() -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sys.stdout, sys.stderr = _Tolerant(sys.stdout), _Tolerant(sys.stderr)
    logging.raiseExceptions = False
    try:
        req = json.loads(sys.stdin.read())
        if req.get("protocol") != PROTOCOL:
            raise LoginError(f"torchx-forge {__version__} in {sys.executable} on this login speaks protocol {PROTOCOL},"
                             f" the client protocol {req.get('protocol')}: install the same torchx-forge on both")
        op = OPS.get(req.get("op"))
        if op is None:
            raise ForgeError(f"unknown request {req.get('op')!r} (torchx-forge {__version__} on this login node)")
        _send({"result": op(req)})
    except ForgeError as e:
        _send({"error": {"type": type(e).__name__, "message": str(e)}})
        return 1
    except Exception as e:  # noqa: BLE001  # the laptop gets one line, not a traceback it cannot read
        _send({"error": {"type": type(e).__name__, "message": f"{type(e).__name__}: {e}"}})
        return 1
    return 0



if __name__ == "__main__":
    sys.exit(main())
