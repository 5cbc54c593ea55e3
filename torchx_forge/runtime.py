"""Helpers for training scripts: resume, save, and stop cleanly when warned (``from torchx_forge import runtime``).

The name users' programs import; the helpers live on the node side, in
:mod:`torchx_forge.node.runtime`, under its import contract: loading this module loads neither
torchx nor yaml nor fsspec (fsspec only when a checkpoint path is a URL).
"""

from torchx_forge.node.runtime import (
    attempt,
    checkpoint_dir,
    commit_checkpoint,
    exit_for_requeue,
    finished,
    install_warning_handler,
    load_latest,
    open_path,
    report,
    resume_from,
    save,
    upstream_result_dirs,
)

__all__ = [
    "attempt", "checkpoint_dir", "commit_checkpoint", "exit_for_requeue", "finished", "install_warning_handler",
    "load_latest", "open_path", "report", "resume_from", "save", "upstream_result_dirs",
]
