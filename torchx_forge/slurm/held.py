"""Tasks Slurm held because it could not launch them, released from the next forge command.

After a controller crash the nodes still remember the ids of the jobs it lost (slurmd keeps a job
id it launched until the controller says the job ended, which a controller that forgot the job
never does). The controller then gives those ids again, the node refuses to launch a second copy,
and Slurm requeues the new job *held*: ``launch failed requeued held``, pending for ever. The
requeue clears the node's memory of the id, so one release launches it (seen on Slurm 22.05).
The program never started, so a release runs nothing twice; a node that keeps failing to launch
is given up on after :data:`LAUNCHES` tries, and the reason stays in the status table.
"""

from __future__ import annotations

from typing import List, Sequence

from torchx_forge.core.errors import SlurmError
from torchx_forge.core.states import SlurmState
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord, Records

#: the reason squeue gives a job Slurm requeued held after its launch failed
LAUNCH_FAILED = "launch failed requeued held"
#: launches tried (sacct rows of the task) before forge stops releasing it
LAUNCHES = 4


def held_after_launch(views: Sequence[TaskView]) -> List[TaskView]:
    """The tasks Slurm holds after a failed launch that forge still releases."""
    return [v for v in views if v.slurm_state is SlurmState.PENDING and v.reason.startswith(LAUNCH_FAILED)
            and v.attempts < LAUNCHES]


def release_held(cli: SlurmCli, records: Records, rec: AppRecord, views: Sequence[TaskView]) -> List[str]:
    """Release the tasks of ``rec`` Slurm held after a failed launch (not of a cancelled app); one note, or none."""
    held = held_after_launch(views)
    if not held or records.cancelled(rec.app_id):
        return []
    ids = sorted({v.key.split("+", 1)[0] for v in held})  # a het job is released whole
    try:
        cli.release(ids)
    except SlurmError as e:  # another command released them first, or the controller is away: next time
        return [f"app {rec.app_id}: could not release {', '.join(ids)} (held after a failed launch): {e}"]
    return [f"app {rec.app_id}: Slurm could not launch {', '.join(ids)} on its node and held it (an id it gave again"
            f" after a controller crash, or a node fault): released, launch {max(v.attempts for v in held)} of {LAUNCHES}"]
