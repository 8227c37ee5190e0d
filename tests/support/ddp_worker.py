"""Run by tests/test_distributed.py: two gloo ranks drive a D2ACE sampler and save what
they saw. Usage (support.workers.run_worker): python -m support.ddp_worker OUT_DIR"""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from d2ace_ext import D2ACEConfig, D2ACESampler

CONFIG = D2ACEConfig(num_epochs=6, warmup_epochs=2, t_start=2, t_end=5, num_neighbors=3)
N, Q, BATCH, EPOCHS, SEED = 42, 4, 8, 6, 3  # last global batch: 2, one per rank


def problem():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, 5, generator=g), (torch.rand(N, Q, generator=g) < 0.4).float()


def logits_for(index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Deterministic stand-in for a model: the same logits whichever rank sees the index."""
    return torch.sin(index.double().unsqueeze(1) * 1.3 + epoch * 0.7 + torch.arange(Q)).float() * 3


def drive(sampler, labels):
    seen = []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            sampler.update(index, logits_for(index, epoch), labels[index])
            seen.append(batch)
    return seen


def rank_main(rank: int, world: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    x, y = problem()
    sampler = D2ACESampler(y, BATCH, x, config=CONFIG, seed=SEED)
    seen = drive(sampler, y)
    torch.save(
        {"seen": seen, "state": sampler.state_dict(), "replicas": sampler.num_replicas},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank_main, args=(2, sys.argv[1]), nprocs=2, join=True)
