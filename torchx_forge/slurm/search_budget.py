"""A running search's budget, raised (``torchx forge budget APP --trials N``).

The app has a run (a run id, a checkpoint dir) for each of ``max_trials`` trials from its submit
(:attr:`~torchx_forge.search.SearchSpec.ceiling`), so raising ``trials`` up to it needs no new
table or script. The command writes ``searches/<submission>/budget.json`` (``{"format": 1,
"trials": N}``; the command is its only writer, atomically), links a planned job for the trials
added (status lists them, not asked yet) and submits one decision job; every decision reads the
budget through :func:`search_spec`, so the study keeps its one writer.
"""

from __future__ import annotations

import time
from typing import Any, Dict

from torchx_forge.core.formats import KEY, format_of
from torchx_forge.core.record import replace
from torchx_forge.state.records import AppRecord, JobRecord, Records

#: the format of budget.json this torchx-forge writes
FORMAT = 1
KIND = "search budget"


def budget_rel(sdir: str) -> str:
    return f"{sdir}/budget.json"


def search_spec(records: Records, sdir: str, head: Dict[str, Any]) -> Any:
    """The search's SearchSpec from its spec.json (``head``), with ``trials`` as raised since, if it was."""
    from torchx_forge.search import SearchSpec  # noqa: PLC0415

    spec = SearchSpec.from_json(head["spec"])
    raw = records.store.read_json(budget_rel(sdir))
    if raw is None:
        return spec
    format_of(raw, KIND, records.store.url_of(budget_rel(sdir)), FORMAT)
    trials = raw.get("trials")
    if isinstance(trials, int) and not isinstance(trials, bool) and spec.trials <= trials <= spec.ceiling:
        return replace(spec, trials=trials)
    raise ValueError(f"{records.store.url_of(budget_rel(sdir))}: trials must be a whole number from {spec.trials}"
                     f" to {spec.ceiling}, got {trials!r}")


def write_budget(records: Records, rec: AppRecord, template: JobRecord, before: int, trials: int) -> None:
    """budget.json, then a planned job for trials ``before``..``trials - 1`` (linked in a file of its own)."""
    records.store.write_json(budget_rel(rec.meta.search), {KEY: FORMAT, "trials": trials, "time": time.time()})
    planned = replace(template, job_id=f"search.planned.{trials}", planned=True, argv=[], tasks=None, offset=before,
                      size=trials - before, created=time.time(), tag="")
    records.add_job(rec.app_id, planned)
