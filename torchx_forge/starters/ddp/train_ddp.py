"""Stands in for your DDP training script (torchrun, gloo on CPU); resumes by itself.

Every rank fits y = 2x with one weight; gradients are averaged by DDP. Rank 0
saves a checkpoint each step; all ranks stop together when any is warned.
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from torchx_forge import runtime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    args = p.parse_args()
    stop = runtime.install_warning_handler()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = torch.nn.Linear(1, 1, bias=False)
    state = runtime.load_latest(lambda path: json.load(open(path))) or {"step": 0, "w": 0.0}
    with torch.no_grad():
        model.weight.fill_(state["w"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr)
    step = state["step"]
    if rank == 0:
        print(f"run {os.environ.get('FORGE_RUN_ID')}: world_size={world}, attempt {runtime.attempt()}, from step {step}")
    gen = torch.Generator().manual_seed(rank)
    while step < args.steps:
        x = torch.rand(32, 1, generator=gen)
        loss = torch.nn.functional.mse_loss(ddp(x), 2 * x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        time.sleep(0.5)
        flag = torch.tensor([float(stop.is_set())])
        dist.all_reduce(flag)
        if rank == 0:
            w = model.weight.item()
            runtime.save(lambda path: json.dump({"step": step, "w": w}, open(path, "w")), step, name="step_{step}.json")
            print(f"step {step} loss {loss.item():.5f}", flush=True)
        dist.barrier()
        if flag.item() > 0 and step < args.steps:
            dist.destroy_process_group()
            runtime.exit_for_requeue()
    if rank == 0:
        json.dump({"loss": loss.item()}, open(os.path.join(os.environ.get("FORGE_RESULT_DIR", "."), "metrics.json"), "w"))
    dist.destroy_process_group()
    runtime.finished()  # every node: all steps are done


if __name__ == "__main__":
    main()
