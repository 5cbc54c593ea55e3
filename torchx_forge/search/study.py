"""The optuna side of a search: an in-memory study rebuilt from the trials' files, its sampler and pruner.

The study is never stored: every decision rebuilds it from the :class:`Trial` records (one file
each, one writer), so there is no SQLite or journal file shared by many writers on NFS
(optuna#5138, #820), a decision step killed halfway leaves nothing half-written, and the same
trials always give the same study. Rebuilding costs milliseconds for hundreds of trials.

Two internals of optuna are used, both stable since optuna 2 and checked by the unit tests:
Hyperband's bracket of a trial number (``HyperbandPruner._get_bracket_id``: a trial's first
rung depends on it) and successive halving's ``completed_rung_K`` trial attribute (the value a
trial had at rung K, which other trials compete against). Optuna is imported lazily: ``torchx``
works without it, and a search says which extra to install.
"""

from __future__ import annotations

import hashlib
import warnings
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from torchx_forge.errors import ConfigError
from torchx_forge.search.spec import RUNG_ALGORITHMS, SearchSpec, require_optuna
from torchx_forge.search.trials import Trial, TrialState

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

#: fixed, so Hyperband's brackets (a hash of the study name and the trial number) never change
STUDY_NAME = "torchx-forge-search"
#: at most this many random trials before TPE models the results (optuna's default)
TPE_STARTUP = 10


def _optuna() -> Any:
    require_optuna()
    import optuna  # noqa: PLC0415 (lazy: the search extra)

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 3 pruned." lines in the decision's log
    return optuna


def sampler_seed(seed: int, n_trials: int) -> int:
    """The sampler's seed for a decision after ``n_trials`` trials: the same whenever it runs on the
    same trials (a re-run after a kill asks the same points), and a stream of its own per (seed,
    n_trials). ``seed + n_trials`` would not do: seed 1 after 6 trials would be seed 0 after 7, and
    two searches of different seeds would ask the same points one trial apart."""
    digest = hashlib.sha256(f"torchx-forge-search:{seed}:{n_trials}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def sampler(spec: SearchSpec, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler that picks new configurations, seeded with :func:`sampler_seed`.

    TPE starts modelling after ``trials // 4`` results (2 to 10): with a budget of 12 trials, 10
    random ones (optuna's default) would leave it 2 to work with. Its constant liar makes trials
    still running count as bad results, so parallel trials are not asked at the same point.
    """
    opt = _optuna()
    seed = sampler_seed(spec.seed, n_trials)
    if spec.sampler_name == "random":
        return opt.samplers.RandomSampler(seed=seed)  # type: ignore[no-any-return]
    startup = max(2, min(TPE_STARTUP, spec.trials // 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", opt.exceptions.ExperimentalWarning)
        return opt.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)  # type: ignore[no-any-return]


def pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    """Successive halving (asha), Hyperband (hyperband), else none."""
    opt = _optuna()
    if spec.algorithm == "asha":
        return opt.pruners.SuccessiveHalvingPruner(min_resource=spec.min_budget, reduction_factor=spec.eta,  # type: ignore[no-any-return]
                                                   min_early_stopping_rate=0)
    if spec.algorithm == "hyperband":
        assert spec.max_budget is not None
        return opt.pruners.HyperbandPruner(min_resource=spec.min_budget, max_resource=spec.max_budget,  # type: ignore[no-any-return]
                                           reduction_factor=spec.eta)
    return opt.pruners.NopPruner()  # type: ignore[no-any-return]


def new_study(spec: SearchSpec, n_trials: int) -> optuna.Study:
    opt = _optuna()
    direction = "minimize" if spec.mode == "min" else "maximize"
    return opt.create_study(study_name=STUDY_NAME, direction=direction, sampler=sampler(spec, n_trials),  # type: ignore[no-any-return]
                            pruner=pruner(spec))


def bracket(spec: SearchSpec, study: optuna.Study, number: int) -> int:
    """Hyperband: the bracket of trial ``number`` (its first rung is ``min_budget * eta**bracket``); else 0."""
    require_optuna()
    from optuna.pruners import HyperbandPruner  # noqa: PLC0415 (lazy: the search extra)

    p = study.pruner
    if spec.algorithm != "hyperband" or not isinstance(p, HyperbandPruner):
        return 0
    if not p._pruners:
        p._try_initialization(study)  # with a fixed max_resource it needs no trials
    # it reads the trial's number only
    return p._get_bracket_id(study, SimpleNamespace(number=number))  # type: ignore[arg-type]


def rung_step(spec: SearchSpec, bracket_id: int, rung: int) -> int:
    """The budget of ``rung`` in ``bracket_id`` (``min_budget * eta**(bracket + rung)``, capped at max_budget)."""
    return spec.rung_budget(bracket_id + rung)


def rung_key(rung: int) -> str:
    """Successive halving's trial attribute for "reached rung K with this value"."""
    return f"completed_rung_{rung}"


def value_at(trial: Trial, step: int) -> Optional[float]:
    """The value the trial reported at the first step >= ``step`` (the one a rung compares)."""
    later = [s for s in trial.intermediate if s >= step]
    return trial.intermediate[min(later)] if later else None


def _rung_attrs(spec: SearchSpec, trial: Trial, bracket_id: int) -> Dict[str, Any]:
    """The rungs ``trial`` has been judged at, as successive halving records them: every rung below its
    current one (it was promoted from each), and its current one too once it ended (pruned there,
    or completed)."""
    if spec.algorithm not in RUNG_ALGORITHMS:
        return {}
    judged = trial.rung + 1 if trial.state in (TrialState.PRUNED, TrialState.COMPLETE) else trial.rung
    out: Dict[str, Any] = {}
    for k in range(judged):
        value = value_at(trial, rung_step(spec, bracket_id, k))
        if value is not None:
            out[rung_key(k)] = value
    return out


def _frozen(spec: SearchSpec, trial: Trial, dists: Dict[str, BaseDistribution], bracket_id: int) -> Any:
    opt = _optuna()
    missing = [k for k in dists if k not in trial.params]
    if missing:
        raise ConfigError(f"search trial {trial.number}", f"has no value for {', '.join(missing)}: the search.space"
                                                          " changed since it was asked; start a new search")
    state = {TrialState.COMPLETE: "COMPLETE", TrialState.PRUNED: "PRUNED", TrialState.FAIL: "FAIL"}.get(trial.state, "RUNNING")
    try:
        return opt.trial.create_trial(
            state=opt.trial.TrialState[state], params={k: trial.params[k] for k in dists}, distributions=dists,
            value=trial.objective if state == "COMPLETE" else None,
            intermediate_values=dict(trial.intermediate), system_attrs=_rung_attrs(spec, trial, bracket_id),
        )
    except ValueError as e:
        raise ConfigError(f"search trial {trial.number}", f"does not fit search.space ({e}): the space changed since"
                                                          " it was asked; start a new search") from None


def rebuild(spec: SearchSpec, trials: Sequence[Trial]) -> optuna.Study:
    """An in-memory study holding ``trials`` (numbered 0, 1, 2 ... in order): the finished ones as
    they ended, the asked, running and paused ones as RUNNING (samplers avoid their points).

    A COMPLETE trial without a value is added as COMPLETE with its last reported value; the caller
    turns one with neither into a failure first (:func:`torchx_forge.search.trials.finished_value`).
    """
    study = new_study(spec, len(trials))
    dists = spec.distributions()
    frozen: List[Any] = [_frozen(spec, t, dists, bracket(spec, study, t.number)) for t in trials]
    study.add_trials(frozen)
    return study
