"""Adaptive search (random, TPE, ASHA, Hyperband) as decisions between Slurm waves: the pure core.

- :mod:`~torchx_forge.search.spec`: the ``search:`` section (:class:`SearchSpec`);
- :mod:`~torchx_forge.search.trials`: one trial, one JSON file (:class:`Trial`);
- :mod:`~torchx_forge.search.engine`: :func:`decide` what to start, promote, prune; :func:`best`, :func:`summary`;
- :mod:`~torchx_forge.search.study`: the in-memory optuna study rebuilt from the trials each time.

No Slurm, no subprocess, no storage here: functions on plain data. Optuna (``pip install
'torchx-forge[search]'``) is imported only when a decision is made.
"""

from torchx_forge.search.engine import Decision, apply, best, decide, summary
from torchx_forge.search.spec import SearchSpec, require_optuna
from torchx_forge.search.trials import Trial, TrialState, finished_value, with_report

__all__ = [
    "Decision", "SearchSpec", "Trial", "TrialState", "apply", "best", "decide", "finished_value", "require_optuna",
    "summary", "with_report",
]
