"""What a run reported: ``$FORGE_RESULT_DIR/metrics.json``, else the last row of ``metrics.csv``.

The convention: a run writes ``metrics.json``, a flat JSON object such as
``{"val_loss": 0.31, "acc": 0.9}`` (nested objects become dotted names, ``{"val": {"loss": 1}}``
-> ``val.loss``). Without that file the last row of ``metrics.csv`` counts (its header row names
the metrics), so a program can append one row per epoch and the final one is shown. Everything
but :func:`read_metrics` is pure.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, Mapping, Optional, Tuple

from torchx_forge.core.storage import StoreError
from torchx_forge.state.files import read_file

METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"


def flatten(obj: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"val": {"loss": 1}}`` -> ``{"val.loss": 1}``; lists are kept as values."""
    out: Dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def number(text: str) -> Any:
    """A CSV cell as int or float when it is one, else the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_metrics_json(text: str) -> Dict[str, Any]:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object of metric: value, got {type(obj).__name__}")
    return flatten(obj)


def parse_metrics_csv(text: str) -> Dict[str, Any]:
    """The last non-empty row of a CSV file, keyed by the header row."""
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {h.strip(): number(v.strip()) for h, v in zip(header, last, strict=False) if h.strip() and v.strip()}


def _read_text(path: str) -> Optional[str]:
    """The text of a local file or URL; None when it is missing or not text. A store that does
    not answer is an error (StoreError, naming the URL), not a run without metrics."""
    try:
        return read_file(path).decode()
    except StoreError:
        raise
    except (OSError, UnicodeDecodeError):
        return None


def read_metrics(result_dir: str) -> Tuple[Dict[str, Any], str]:
    """(metrics, problem) of one run: metrics.json, else the last row of metrics.csv."""
    for name, parse in ((METRICS_JSON, parse_metrics_json), (METRICS_CSV, parse_metrics_csv)):
        path = f"{result_dir.rstrip('/')}/{name}"
        text = _read_text(path)
        if text is None:
            continue
        try:
            return parse(text), ""
        except (ValueError, csv.Error) as e:
            return {}, f"{path}: unreadable ({e})"
    return {}, ""


