"""What a dry run shows of a sweep: a readable table of its runs (the first :data:`PREVIEW_ROWS`)."""

from __future__ import annotations

from typing import Dict, Tuple

from torchx_forge.slurm.report import format_table
from torchx_forge.state.tables import read_table

PREVIEW_ROWS = 50


def runs_preview(table_path: str, limit: int = PREVIEW_ROWS) -> str:
    """A readable table of a sweep's runs (the first ``limit``), for --dryrun."""
    table = read_table(table_path)
    runs = table["runs"]
    role_of: Dict[int, Tuple[str, int]] = {}
    for name, idx in table["roles"].items():
        for k, i in enumerate(idx):
            if i < limit:
                role_of[i] = (name, k)
    rows = [["RUN", "ROLE/REPLICA", "RUN ID", "CASE", "PARAMETERS"]]
    for r in runs[:limit]:
        name, k = role_of[r["index"]]
        params = " ".join(f"{key}={value}" for key, value in r["params"]) or "-"
        rows.append([str(r["index"]), f"{name}/{k}", r["run_id"], r["case"] or "-", params])
    more = f"\n  ... {len(runs) - limit} more; `torchx forge preview --config FILE` lists them all" if len(runs) > limit else ""
    return f"# {len(runs)} run(s), table {table_path}\n{format_table(rows)}{more}\n"
