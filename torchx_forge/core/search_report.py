"""A search trial's intermediate report: the file ``runtime.report()`` writes on the compute node and
the decision step reads (``$FORGE_SEARCH_REPORT``).

One JSON object per trial, keyed by step, replaced whole (atomically) at every report::

    {"format": 1, "steps": {"1": {"loss": 0.91}, "3": {"loss": 0.52, "acc": 0.8}}}

A trial writes only its own file and never the study: the decision step, the study's one writer,
folds these values into the trial's record (``Trial.intermediate``). Standard library only: the
program imports it through :mod:`torchx_forge.runtime`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping

from torchx_forge.core.formats import KEY, format_of

#: the format this torchx-forge writes
FORMAT = 1
KIND = "search report"

Steps = Dict[int, Dict[str, float]]


def dumps(steps: Mapping[int, Mapping[str, float]]) -> str:
    """The file's text for ``steps`` (step -> metric -> value), steps in order."""
    body = {str(step): dict(metrics) for step, metrics in sorted(steps.items())}
    return json.dumps({KEY: FORMAT, "steps": body}, sort_keys=False)


def loads(text: str, path: str = "<report>") -> Steps:
    """step -> metric -> value from a report file's text. ValueError names ``path`` when the file is
    broken; :class:`~torchx_forge.core.formats.NewerFormatError` when a newer forge wrote it."""
    try:
        obj = json.loads(text) if text.strip() else {KEY: FORMAT, "steps": {}}
    except json.JSONDecodeError as e:
        raise ValueError(f"{KIND} {path}: not JSON ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("steps"), dict):
        raise ValueError(f"{KIND} {path}: expected {{\"format\": {FORMAT}, \"steps\": {{STEP: {{METRIC: VALUE}}}}}}")
    format_of(obj, KIND, path, FORMAT)
    out: Steps = {}
    for step, metrics in obj["steps"].items():
        if not str(step).lstrip("-").isdigit() or not isinstance(metrics, dict):
            raise ValueError(f"{KIND} {path}: step {step!r} is not a whole number with a mapping of metrics")
        out[int(step)] = {str(k): v for k, v in metrics.items() if _is_number(v)}
    return out


def values_of(steps: Mapping[int, Mapping[str, Any]], metric: str) -> Dict[int, float]:
    """``metric``'s value at every step that reported it (steps without it are left out)."""
    return {step: float(m[metric]) for step, m in sorted(steps.items()) if _is_number(m.get(metric))}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)  # NaN and inf included: a diverged trial
