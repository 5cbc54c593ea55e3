"""A learning curve for searches (Syne Tune's "height"): per step (0.1 + width*step/100)**-1 + height*0.1.

    python height.py --steps 27 --width 10 --height 0 [--sleep 0.2] [--width_cost C] [--fail_above H]

Reports every step (runtime.report), saves a checkpoint every step and resumes from the latest:
under ASHA a promoted trial goes on where it stopped, so each step runs once. With ``--fail_above``
a trial whose height is above H fails (exit 1) after its first step: a search's failure cap at work.
With ``--width_cost C`` a step sleeps ``sleep * (1 + C * width / 20)``: wider models take longer
(C=2: a step of width 20 takes 3 times one of width 0), so the trials of a wave end apart.
"""

import argparse
import json
import os
import sys
import time

from torchx_forge import runtime

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=27)
p.add_argument("--width", type=float, default=10.0)
p.add_argument("--height", type=float, default=0.0)
p.add_argument("--sleep", type=float, default=0.2)
p.add_argument("--width_cost", type=float, default=0.0)
p.add_argument("--fail_above", type=float, default=None)
a = p.parse_args()


def load(path: str) -> int:
    with open(os.path.join(path, "state.json")) as f:
        return int(json.load(f)["step"])


start = runtime.load_latest(load) or 0
loss = None
for step in range(start + 1, a.steps + 1):
    time.sleep(a.sleep * (1 + a.width_cost * a.width / 20))
    loss = (0.1 + a.width * step / 100) ** -1 + a.height * 0.1
    print(f"step {step} loss {loss:.6f}", flush=True)

    def write(path: str, step: int = step) -> None:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "state.json"), "w") as f:
            json.dump({"step": step}, f)

    runtime.save(write, step, name="step_{step}")
    if a.fail_above is not None and a.height > a.fail_above:
        sys.exit(f"height {a.height} is above {a.fail_above}: failing (--fail_above)")
    if runtime.report(step, loss=loss):
        break
