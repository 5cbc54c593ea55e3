"""Stands in for your training script; keep the three marked lines and it resumes by itself.

It fits y = 2x with one weight by gradient descent, one step per second.
"""

import argparse
import csv
import json
import os
import time

from torchx_forge import runtime  # (1) the resume contract


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args()
    stop = runtime.install_warning_handler()  # (2) be told before the time limit
    state = runtime.load_latest(lambda path: json.load(open(path))) or {"step": 0, "w": 0.0}
    print(f"run {os.environ.get('FORGE_RUN_ID')} attempt {runtime.attempt()} starts at step {state['step']}")
    metrics = {}
    while state["step"] < args.steps:
        time.sleep(1)
        grad = 2 * (state["w"] - 2.0)
        state = {"step": state["step"] + 1, "w": state["w"] - args.lr * grad}
        loss = (state["w"] - 2.0) ** 2
        metrics[f"step_{state['step']}.json"] = {"loss": loss}
        runtime.save(lambda path: json.dump(state, open(path, "w")), state["step"], name="step_{step}.json", keep=0)
        json.dump(metrics, open(os.path.join(runtime.checkpoint_dir(), "metrics.json"), "w"))
        if stop.is_set():
            runtime.exit_for_requeue()  # (3) saved: come back and resume
    os.makedirs("outputs", exist_ok=True)
    with open(f"outputs/{os.environ.get('FORGE_RUN_ID', 'run')}.csv", "w", newline="") as f:
        csv.writer(f).writerows([["step", "loss"]] + [[k, v["loss"]] for k, v in metrics.items()])
    result = os.environ.get("FORGE_RESULT_DIR", ".")
    json.dump({"loss": loss, "w": state["w"]}, open(os.path.join(result, "metrics.json"), "w"))
    runtime.finished()  # (4) really done: an end right after a warning is not taken for an interruption
    print(f"done: w={state['w']:.4f} loss={loss:.6f}")


if __name__ == "__main__":
    main()
