"""The batch script's question after its tasks end: requeue this job (same job id) or not?

    python -m torchx_forge.node.decide --exit-code RC --task ROLE:REPLICA [--task ...]

Exits 0 when the job should requeue itself (``scontrol requeue``), 1 otherwise, and prints why
into the batch log. It reads what the launchers wrote in the tasks' state files and the retry
policy from the environment (:meth:`RetryPolicy.from_env`); when the budget is used up it leaves
that note in the state files, where status shows it. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Mapping, Optional, Sequence

from torchx_forge.core import envvars
from torchx_forge.core.formats import NewerFormatError
from torchx_forge.core.policy import STOPPED_FROM_OUTSIDE, RetryPolicy, decide
from torchx_forge.core.states import Outcome
from torchx_forge.core.storage import store_wait
from torchx_forge.state.files import be_patient
from torchx_forge.state.taskfile import TaskFile


def run(tasks: Sequence[str], env: Mapping[str, str]) -> int:
    policy = RetryPolicy.from_env(env)
    files: List[TaskFile] = []
    outcomes: List[Outcome] = []
    preempted = False
    used = 1
    for task in tasks:
        role, _, replica = task.rpartition(":")
        try:
            f = TaskFile(env.get(envvars.STATE_DIR.name, ""), env.get(envvars.APP_ID.name, ""), role, int(replica)).load()
        except NewerFormatError as e:
            print(f"torchx-forge: not requeueing ({e})", flush=True)
            return 1
        files.append(f)
        try:
            outcomes.append(Outcome(f.last.outcome))
        except ValueError:
            outcomes.append(Outcome.FAILED)  # the launcher never reported an end
        used = max(used, (f.last.attempt or 0) + 1)
        preempted |= f.last.warned_by in STOPPED_FROM_OUTSIDE
    d = decide(outcomes, used, policy, preempted)
    print(f"torchx-forge: {'requeueing' if d.requeue else 'not requeueing'} ({d.reason})", flush=True)
    if not d.requeue and d.reason.startswith("retries exhausted"):
        for f in files:
            f.note(d.reason)
    return 0 if d.requeue else 1


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m torchx_forge.node.decide")
    p.add_argument("--task", action="append", default=[], help="ROLE:REPLICA of a task of this job")
    p.add_argument("--exit-code", type=int, default=0)
    args = p.parse_args(argv)
    be_patient(store_wait())  # the task state files may be on an object store that is briefly down
    sys.exit(run(args.task, os.environ))


if __name__ == "__main__":
    main()
