"""A small DDP training script (CPU, gloo) that honours torchx-forge's resume contract.

    torchx run --scheduler slurm_forge dist.ddp -j 2x2 --max_retries 2 --script examples/ddp_train.py -- --steps 40

Fits y = 3x + 1 with one linear layer across all ranks; rank 0 prints world size
and loss, saves a checkpoint every step (torchx_forge.runtime), and all ranks stop
together at the same step when the pre-timeout warning or SIGTERM reaches any of
them, so the next attempt resumes exactly where this one stopped. --ledger makes
rank 0 append "step N attempt A" per step.
"""

import argparse
import os
import time

import torch
import torch.distributed as dist

from torchx_forge import runtime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--step-seconds", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--ledger", default="")
    args = p.parse_args()

    stop = runtime.install_warning_handler()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    step = 0
    state = runtime.load_latest(lambda path: torch.load(path, weights_only=True))
    if state:
        model.module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
    if rank == 0:
        print(f"world_size={world} attempt={runtime.attempt()} start_step={step} "
              f"rendezvous={os.environ.get('FORGE_RANK0_HOST')}:{os.environ.get('FORGE_RDZV_PORT')}", flush=True)
    gen = torch.Generator().manual_seed(1000 + rank)
    while step < args.steps:
        x = torch.rand(64, 1, generator=gen) * 4 - 2
        loss = torch.nn.functional.mse_loss(model(x), 3 * x + 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        time.sleep(args.step_seconds)
        flag = torch.tensor([1.0 if stop.is_set() else 0.0])
        dist.all_reduce(flag)  # stop together: any rank warned -> all stop after this step
        if rank == 0:
            runtime.save(lambda path: torch.save({"model": model.module.state_dict(), "opt": opt.state_dict(),
                                                  "step": step}, path), step)
            print(f"step {step} loss {loss.item():.4f}", flush=True)
            if args.ledger:
                with open(args.ledger, "a") as f:
                    f.write(f"step {step} attempt {runtime.attempt()}\n")
        dist.barrier()
        if flag.item() > 0 and step < args.steps:
            if rank == 0:
                print(f"stopping at step {step} to be requeued", flush=True)
            dist.destroy_process_group()
            runtime.exit_for_requeue()
    if rank == 0:
        print(f"done: {step} steps, final loss {loss.item():.4f}", flush=True)
    dist.destroy_process_group()
    runtime.finished()


if __name__ == "__main__":
    main()
