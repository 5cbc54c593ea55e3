"""A tiny training loop that honours torchx-forge's checkpoint/resume contract.

    python examples/train_steps.py --steps 30 --step-seconds 1 [--ledger FILE]

Each step "trains" (sleeps), then saves a checkpoint through torchx_forge.runtime
(written atomically, committed in checkpoint_state.json). When the pre-timeout
warning or SIGTERM arrives it stops after the current step and exits with code
75 (or --warned-exit-code), so slurm_forge requeues it; the next attempt resumes from the
checkpoint. When all steps are done it says so (runtime.finished()), so an end that
happens to come after a warning is not taken for an interruption.
--ledger appends "step N attempt A" per step, to check every step ran once.
The checkpoint dir may be an fsspec URL (``checkpoint_dir=s3://bucket/ckpt/{run_id}``).
"""

import argparse
import json
import os
import time

from torchx_forge import runtime


def _write_json(path: str, obj: dict) -> None:
    with runtime.open_path(path, "w") as f:  # a local path, or a URL when the checkpoint dir is on an object store
        json.dump(obj, f)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--step-seconds", type=float, default=1.0)
    p.add_argument("--ledger", default="")
    p.add_argument("--fail-first-attempt", action="store_true", help="exit 1 on attempt 0 (to test retries)")
    p.add_argument("--warned-exit-code", type=int, default=75,
                   help="exit code after saving when warned (75: runtime.exit_for_requeue(); 0 like many programs)")
    args = p.parse_args()

    stop = runtime.install_warning_handler()
    state = runtime.load_latest(lambda path: json.load(runtime.open_path(path, "r")))
    step = state["step"] if state else 0
    attempt = runtime.attempt()
    print(f"attempt {attempt}: starting at step {step} (resume from {runtime.resume_from()})", flush=True)
    if args.fail_first_attempt and attempt == 0:
        raise SystemExit(1)
    while step < args.steps:
        time.sleep(args.step_seconds)
        step += 1
        if args.ledger:
            with open(args.ledger, "a") as f:
                f.write(f"step {step} attempt {attempt}\n")
        runtime.save(lambda path: _write_json(path, {"step": step}), step, name="step_{step}.json")
        print(f"step {step} saved", flush=True)
        if stop.is_set() and step < args.steps:
            print(f"stopping at step {step} to be requeued", flush=True)
            if args.warned_exit_code == 75:
                runtime.exit_for_requeue()
            raise SystemExit(args.warned_exit_code)
    runtime.finished()
    print(f"done: {step} steps on attempt {attempt} (job {os.environ.get('SLURM_JOB_ID', '-')})", flush=True)


if __name__ == "__main__":
    main()
