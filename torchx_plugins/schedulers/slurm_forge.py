"""``slurm_forge`` in TorchX main's plugin registry (the ``torchx_plugins`` namespace package).

TorchX main discovers schedulers here first and reads ``torchx.schedulers`` entry points (deprecated)
after; ``TORCHX_PLUGINS_SOURCE=1`` reads only this. torchx 0.7 never imports this module: it
finds ``slurm_forge`` through the entry point in pyproject.toml. Importing this module first
withdraws forge's entry points from main's view, so ``slurm_forge`` is registered once
(:func:`torchx_forge.compat.withdraw_forge_entry_points`). The scheduler itself is imported only
when it is used, which keeps plugin discovery (every ``torchx`` command) fast.
"""

from __future__ import annotations

from typing import Any

from torchx_forge.compat import plugin_scheduler, withdraw_forge_entry_points

withdraw_forge_entry_points()


@plugin_scheduler("slurm_forge")
def slurm_forge(session_name: str, **kwargs: Any) -> Any:
    """The ``slurm_forge`` scheduler (:func:`torchx_forge.scheduler.create_scheduler`)."""
    from torchx_forge.scheduler import create_scheduler  # noqa: PLC0415  # lazily: see the module docstring

    return create_scheduler(session_name, **kwargs)
