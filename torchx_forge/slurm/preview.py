"""What a dry run shows: of a sweep, a readable table of its runs (the first :data:`PREVIEW_ROWS`); of any
app, its AppDef with secret-looking values masked."""

from __future__ import annotations

import copy

from torchx.specs import AppDef

from torchx_forge.core import runtable
from torchx_forge.core.secrets import masked
from torchx_forge.slurm.report import format_table
from torchx_forge.state.tables import read_table

PREVIEW_ROWS = 50


def runs_preview(table_path: str, limit: int = PREVIEW_ROWS) -> str:
    """A readable table of a sweep's runs (the first ``limit``), for --dryrun."""
    table = read_table(table_path)
    count = runtable.run_count(table)
    role_of = runtable.role_of_positions(table, limit)
    rows = [["RUN", "ROLE/REPLICA", "RUN ID", "CASE", "PARAMETERS"]]
    for pos in range(min(limit, count)):
        point = runtable.point_at(table, pos)
        name, k = role_of[pos]
        params = " ".join(f"{key}={value}" for key, value in point.params) or "-"
        rows.append([str(point.index), f"{name}/{k}", point.run_id, point.case or "-", params])
    more = f"\n  ... {count - limit} more; `torchx forge preview --config FILE` lists them all" if count > limit else ""
    return f"# {count} run(s), table {table_path}\n{format_table(rows)}{more}\n"


def masked_app(app: AppDef) -> AppDef:
    """A copy of ``app`` whose roles' secret-looking env values read ``****``."""
    shown = copy.deepcopy(app)
    for role in shown.roles:
        role.env = masked(role.env)
    return shown
