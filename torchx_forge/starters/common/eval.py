"""Evaluates one training run from the checkpoint its step handed over (--checkpoint)."""

import argparse
import json
import os


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    args = p.parse_args()
    state = json.load(open(args.checkpoint))
    err = abs(state["w"] - 2.0)
    json.dump({"abs_err": err}, open(os.path.join(os.environ.get("FORGE_RESULT_DIR", "."), "metrics.json"), "w"))
    print(f"run {os.environ.get('FORGE_RUN_ID')}: checkpoint {os.path.basename(args.checkpoint)}, |w - 2| = {err:.4f}")


if __name__ == "__main__":
    main()
