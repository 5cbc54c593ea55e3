"""`torchx forge results` on a real sweep: each run writes $FORGE_RESULT_DIR/metrics.json on the local cluster."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

import pytest

from conftest import handle_of, run_torchx, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

LRS = [0.1, 0.01, 0.001, 0.0001]
# val_loss is smallest at lr=0.01; sgd runs are 0.5 worse
PROGRAM = (
    "import json, math, os, sys; a = sys.argv[1:]; lr = float(a[a.index('--lr') + 1]); opt = a[a.index('--opt') + 1]; "
    "loss = round(abs(math.log10(lr) + 2) + (0.5 if opt == 'sgd' else 0), 6); "
    "json.dump({'val_loss': loss, 'lr_seen': lr}, open(os.path.join(os.environ['FORGE_RESULT_DIR'], 'metrics.json'), 'w'))"
)


def expected_loss(lr: float, opt: str) -> float:
    return round(abs(math.log10(lr) + 2) + (0.5 if opt == "sgd" else 0), 6)


def test_results_of_a_real_sweep_table_csv_and_plot(state_dir: Path, tmp_path: Path):
    exp = tmp_path / "lrs.yaml"
    exp.write_text(
        "name: lrs\n"
        f"run:\n  command: [{json.dumps(sys.executable)}, -c, {json.dumps(PROGRAM)}]\n  args: {{lr: 0.1}}\n"
        f"sweep:\n  shared_axes: {{run.args.lr: {LRS}}}\n"
        "  cases:\n    - {name: adam, set: {run.args.opt: adam}}\n    - {name: sgd, set: {run.args.opt: sgd}}\n"
    )
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(exp))
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    app_id = handle.rsplit("/", 1)[1]
    wait_for(lambda: "State: SUCCEEDED" in run_torchx("status", handle).stdout, 120, f"{handle} to succeed", interval=1)

    out_csv, out_png = tmp_path / "out" / "lrs.csv", tmp_path / "out" / "lrs.png"
    out_csv.parent.mkdir()
    r = run_torchx("forge", "results", handle, "--metric", "val_loss", "--csv", str(out_csv),
                   "--plot", str(out_png), "--x", "run.args.lr")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"lrs ({app_id}): 8 run(s)"
    assert lines[1].split() == ["RUN", "RUN", "ID", "CASE", "run.args.opt", "run.args.lr", "STATE", "ATTEMPTS", "EXIT", "val_loss"]
    body = [line.split() for line in lines[2:10]]
    for k, row in enumerate(body):
        opt, lr = ("adam", "sgd")[k // 4], LRS[k % 4]
        assert row[0] == str(k) and row[2:5] == [opt, opt, str(lr)], row
        assert row[5:8] == ["COMPLETED", "1", "0"], row
        assert float(row[8]) == pytest.approx(expected_loss(lr, opt)), row
    assert f"wrote {out_png} (val_loss vs run.args.lr, 8 point(s))" in r.stdout

    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    for row in rows:
        lr, opt = float(row["run.args.lr"]), row["run.args.opt"]
        assert float(row["val_loss"]) == pytest.approx(expected_loss(lr, opt))
        assert row["state"] == "COMPLETED" and row["exit_code"] == "0" and row["case"] == opt
        assert row["result_dir"] == str(state_dir / "results" / app_id / row["run_id"])
        assert "lr_seen" not in row  # --metric picks one
    data = out_png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    # every metric without --metric; a wrong --x lists the parameters
    assert re.search(r"lr_seen\s+val_loss", run_torchx("forge", "results", handle).stdout)
    bad = run_torchx("forge", "results", handle, "--metric", "val_loss", "--plot", str(out_png), "--x", "lr")
    assert bad.returncode == 1
    assert "parameters: run.args.opt, run.args.lr" in bad.stderr, bad.stderr
