"""Handing results from one pipeline step to the next (standard library only; fsspec for URLs).

Every run ends with ``summary.json`` in its result directory (FORGE_RESULT_DIR):
state, exit code, attempts, run id, parameters. A step that follows other steps
reads those summaries to learn which upstream runs finished
(``FORGE_UPSTREAM_RUNS_OK`` / ``_FAILED``, ``FORGE_UPSTREAM_RESULT_DIRS``); a
per-run step also gets the checkpoint of its upstream run, chosen by policy
(``FORGE_INPUT_CHECKPOINT``, optionally as an argument):

- ``latest``: the checkpoint resume would pick (see torchx_forge.node.checkpoint);
- ``best``: the checkpoint with the lowest (``mode: min``) or highest ``metric`` in
  ``metric_file`` (default ``metrics.json`` in the upstream checkpoint dir), a JSON
  object ``{checkpoint: {metric: value}}`` or JSON lines ``{"checkpoint": ..., metric: ...}``;
- ``explicit``: ``path``, where ``{run_id}`` and ``{checkpoint_dir}`` are filled in.

Checkpoint and result dirs may be fsspec URLs (``s3://bucket/...``): the chosen checkpoint is then
a URL too, for the program to open with fsspec.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Dict, List, Mapping, Optional, Tuple

from torchx_forge.core import envvars
from torchx_forge.core.runrow import Inputs, RunRow
from torchx_forge.core.storage import StoreError
from torchx_forge.node import contract
from torchx_forge.node.checkpoint import CheckpointError, latest_checkpoint
from torchx_forge.node.summary import read_summary
from torchx_forge.state.files import is_url, read_file


def _env_for(env: Mapping[str, str], stage: str) -> Dict[str, str]:
    return {**env, envvars.STAGE.name: stage}


def upstream_runs(row: RunRow, env: Mapping[str, str]) -> List[Tuple[str, int, str, str]]:
    """(stage, run index, run id, result dir) of every upstream run of this step."""
    out = []
    for up in row.upstream:
        e = _env_for(env, up.stage)
        for index, run_id in up.runs:
            out.append((up.stage, index, run_id, contract.result_dir(e, run_id)))
    return out


def upstream_status(row: RunRow, env: Mapping[str, str]) -> Tuple[List[int], List[int], List[str], bool]:
    """(indices ok, indices failed, result dirs of the ok runs, all ended?) from the summaries."""
    ok, failed, dirs, ended = [], [], [], True
    for _stage, index, _run_id, directory in upstream_runs(row, env):
        s = read_summary(directory)
        if s is None or s.state in (None, "RUNNING", "INTERRUPTED"):
            ended = False
        elif s.state == "COMPLETED":
            ok.append(index)
            dirs.append(directory)
        else:
            failed.append(index)
    return ok, failed, dirs, ended


def split_result_dirs(value: str) -> List[str]:
    """``FORGE_UPSTREAM_RESULT_DIRS`` as a list: the dirs are joined by ``:``, and a ``:`` that starts
    ``://`` belongs to a URL (``s3://b/r/a:s3://b/r/b`` is two dirs)."""
    return [d for d in re.split(r":(?!//)", value) if d]


def upstream_env(row: RunRow, env: Dict[str, str]) -> None:
    if not row.upstream:
        return
    ok, failed, dirs, _ = upstream_status(row, env)
    env[envvars.UPSTREAM_RUNS_OK.name] = ",".join(map(str, sorted(ok)))
    env[envvars.UPSTREAM_RUNS_FAILED.name] = ",".join(map(str, sorted(failed)))
    env[envvars.UPSTREAM_RESULT_DIRS.name] = os.pathsep.join(dirs)


def choose_input(row: RunRow, env: Mapping[str, str]) -> Optional[str]:
    """The upstream checkpoint a per-run step receives (None when the upstream run saved none)."""
    inputs = row.inputs
    ups = row.upstream
    if not inputs or len(ups) != 1 or len(ups[0].runs) != 1:
        return None
    up = ups[0]
    run_id = up.runs[0][1]
    directory = contract.checkpoint_dir(_env_for(env, up.stage), run_id, up.checkpoint_dir)
    policy = inputs.checkpoint
    if policy == "explicit":
        return str(inputs.path).format(run_id=run_id, checkpoint_dir=directory)
    if policy == "latest":
        return latest_checkpoint(directory)
    return _best(directory, inputs)


def _in(directory: str, name: str) -> str:
    """``name`` in ``directory`` (a local path or URL); absolute paths and URLs are kept."""
    if os.path.isabs(name) or is_url(name):
        return name
    return f"{directory.rstrip('/')}/{name}"


def _best(directory: str, inputs: Inputs) -> Optional[str]:
    path = _in(directory, inputs.metric_file or "metrics.json")
    metric, mode = str(inputs.metric), inputs.mode or "min"
    try:
        text = read_file(path).decode()
    except StoreError as e:
        raise CheckpointError(f"checkpoint: best needs {path}, which cannot be read: {e}") from None
    except (OSError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint: best needs {path}, which does not exist") from None
    try:
        scores = _scores(text, metric)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read metric {metric!r} per checkpoint ({e!r})") from None
    if not scores:
        raise CheckpointError(f"{path} lists no checkpoint with metric {metric!r}")
    pick = (min if mode == "min" else max)(scores, key=lambda k: scores[k])
    return _in(directory, pick)


def _scores(text: str, metric: str) -> Dict[str, float]:
    """Metric per checkpoint from ``{checkpoint: {metric: v}}`` / ``{checkpoint: v}`` or JSON lines."""
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None  # several lines: JSON lines
    if isinstance(whole, dict) and "checkpoint" not in whole:
        return {k: float(v[metric] if isinstance(v, dict) else v) for k, v in whole.items()}
    records = [whole] if isinstance(whole, dict) else [json.loads(line) for line in text.splitlines() if line.strip()]
    return {str(rec["checkpoint"]): float(rec[metric]) for rec in records}


def wait_for_upstream(row: RunRow, env: Mapping[str, str], poll: float = 0.5) -> Tuple[List[int], List[int]]:
    """Outside Slurm: block until every upstream run has a summary; returns (ok, failed) indices."""
    announced = False
    while True:
        ok, failed, _, ended = upstream_status(row, env)
        if ended:
            return ok, failed
        if not announced:
            stages = ", ".join(sorted({u.stage for u in row.upstream}))
            print(f"torchx-forge: waiting for {stages}", flush=True)
            announced = True
        time.sleep(poll)
