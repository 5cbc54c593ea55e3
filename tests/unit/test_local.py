"""The same sweep without a cluster: stock local_cwd, at most N runs at once."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_torchx


def test_local_cwd_runs_a_sweep_with_bounded_parallelism(state_dir: Path, tmp_path: Path):
    exp = tmp_path / "local.yaml"
    exp.write_text(
        "name: loc\n"
        "run:\n"
        f"  command: [sh, -c, 'date +%s.%N > {tmp_path}/start.$FORGE_RUN_INDEX; sleep 1; date +%s.%N > {tmp_path}/end.$FORGE_RUN_INDEX; echo run $FORGE_RUN_INDEX $FORGE_RUN_ID']\n"
        "sweep: {shared_axes: {run.env.X: [a, b, c, d, e, f]}}\n"
    )
    p = run_torchx("run", "--scheduler", "local_cwd", "forge.sweep", "--config", str(exp), "--local_parallel", "2",
                   cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    spans = [(float((tmp_path / f"start.{i}").read_text()), float((tmp_path / f"end.{i}").read_text())) for i in range(6)]
    busiest = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert busiest <= 2, spans  # never more than 2 at once
    assert max(e for _, e in spans) - min(s for s, _ in spans) >= 2.5  # so 6 one-second runs took 3 rounds
    # every run left its summary where results views and later pipeline steps read it
    summaries = list(state_dir.glob("results/*/*/summary.json"))
    assert len(summaries) == 6 and {json.loads(s.read_text())["state"] for s in summaries} == {"COMPLETED"}
