"""The results of an app: one row per run with its parameters, how it ended and the metrics it wrote.

What ``torchx forge results`` shows (the command itself is :mod:`torchx_forge.cli.results`):

* :mod:`.runs`: which runs an app (or a pipeline step) has, from its record and run tables, and
  how each ended (the scheduler's task views, else the run's ``summary.json``);
* :mod:`.metrics`: what each run reported, ``$FORGE_RESULT_DIR/metrics.json`` or the last row of
  ``metrics.csv``;
* :mod:`.export`: the rows as a readable table, CSV and JSON;
* :mod:`.plot`: a metric against a swept parameter (matplotlib, an optional extra);
* :mod:`.search`: a search's trials (its runs) as rows, the best one marked, and its metric by trial.
"""

from torchx_forge.results.export import (
    FIXED,
    MISSING,
    export_name,
    fmt,
    rows_of,
    select_metrics,
    table_rows,
    write_csv,
    write_json,
)
from torchx_forge.results.metrics import (
    METRICS_CSV,
    METRICS_JSON,
    flatten,
    number,
    parse_metrics_csv,
    parse_metrics_json,
    read_metrics,
)
from torchx_forge.results.plot import PLOT_HINT, check_param, figure, log_x, plot, plot_metric, plot_points
from torchx_forge.results.runs import (
    Results,
    RunResult,
    SearchInfo,
    choose_stage,
    collect,
    load,
    planned_runs,
    result_dir_of,
    status_of,
    table_ref,
    with_trials,
)
from torchx_forge.results.search import (
    BEST_MARK,
    TRIAL_X,
    best_line,
    best_run,
    best_so_far,
    export_optuna,
    plot_trials,
    search_metrics,
    trial_points,
    trial_rows_of,
    trial_table,
)

__all__ = [
    "BEST_MARK", "FIXED", "METRICS_CSV", "METRICS_JSON", "MISSING", "PLOT_HINT", "TRIAL_X", "Results", "RunResult",
    "SearchInfo", "best_line", "best_run", "best_so_far", "check_param", "choose_stage", "collect", "export_name",
    "export_optuna", "figure", "flatten", "fmt", "load", "log_x", "number", "parse_metrics_csv", "parse_metrics_json",
    "planned_runs",
    "plot", "plot_metric", "plot_points", "plot_trials", "read_metrics", "result_dir_of", "rows_of", "search_metrics",
    "select_metrics", "status_of", "table_ref", "table_rows", "trial_points", "trial_rows_of", "trial_table",
    "with_trials", "write_csv", "write_json",
]
