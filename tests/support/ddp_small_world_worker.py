"""Run by tests/test_distributed.py: three gloo ranks with a global batch of 2 (smaller
than the world), then bad steps on one rank, on a replicated and a row-sharded sampler.
Usage (support.workers.run_worker): python -m support.ddp_small_world_worker OUT_DIR"""

import math
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from d2ace_ext import D2ACEConfig, D2ACESampler

CONFIG = D2ACEConfig(num_epochs=4, warmup_epochs=1, t_start=1, t_end=3, num_neighbors=2)
N, Q, BATCH, EPOCHS, WORLD = 9, 3, 2, 4, 3


def problem():
    g = torch.Generator().manual_seed(1)
    return torch.rand(N, 4, generator=g), (torch.rand(N, Q, generator=g) < 0.5).float()


def bad_step(sampler, labels, rank, bad_rank, kind):
    """One update where only ``bad_rank`` passes something invalid; returns the error seen."""
    index = torch.tensor([rank])
    logits = torch.zeros(1, Q)
    if rank == bad_rank and kind == "nan":
        logits[0, 1] = math.nan
    if rank == bad_rank and kind == "index":
        index = torch.tensor([N + 5])
    try:
        sampler.update(index, logits, labels[index.clamp(max=N - 1)])
    except (TypeError, ValueError, IndexError) as exc:
        return type(exc).__name__, str(exc)
    return None


def selector_tensors(sampler) -> dict:
    """The selector state's tensors (D2ACE's under "visits"), copied."""
    state = sampler.state_dict()["selector"]
    return {k: v.clone() for k, v in {**state, **state.get("visits", {})}.items() if isinstance(v, torch.Tensor)}


def odd_steps(sampler, labels, rank) -> dict:
    """Steps with a fault on one rank only, which every rank must refuse alike:
    {name: (error each rank saw, whether this rank's state is unchanged)}."""
    index = torch.tensor([rank])
    results = {}
    for name, bad_rank in (("sparse outputs", 0), ("mixed kind", 2), ("unknown kind", 1)):
        outputs, kind = torch.zeros(1, Q), "logits"
        if rank == bad_rank and name == "sparse outputs":
            outputs = outputs.to_sparse()
        if rank == bad_rank and name == "mixed kind":  # valid alone; the others' zeros are valid probs too
            outputs, kind = torch.full((1, Q), 0.5), "probs"
        if rank == bad_rank and name == "unknown kind":
            kind = "prob"
        before = selector_tensors(sampler)
        try:
            sampler.update(index, outputs, labels[index], kind=kind)
            error = None
        except (TypeError, ValueError, IndexError) as exc:
            error = type(exc).__name__, str(exc)
        after = selector_tensors(sampler)
        results[name] = error, all(torch.equal(before[k], after[k]) for k in before)
    return results


def rank_main(rank: int, world: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    x, y = problem()
    sampler = D2ACESampler(y, BATCH, x, config=CONFIG, seed=7)
    seen = []
    for epoch in range(EPOCHS):  # one shuffled warm-up epoch, then weighted ones
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            logits = torch.sin(index.double().unsqueeze(1) + epoch + torch.arange(Q)).float() * 3
            sampler.update(index, logits, y[index])
            seen.append(batch)
    errors = [bad_step(sampler, y, rank, 1, "nan"), bad_step(sampler, y, rank, 2, "index")]
    errors.append(bad_step(sampler, y, rank, -1, "none"))  # the group still works afterwards
    sharded = D2ACESampler(y, BATCH, x, config=CONFIG, seed=7, shard_state=True)
    odd = {"replicated": odd_steps(sampler, y, rank), "sharded": odd_steps(sharded, y, rank)}
    odd["after"] = bad_step(sharded, y, rank, -1, "none")  # the group still works afterwards
    torch.save({"seen": seen, "errors": errors, "odd": odd}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank_main, args=(WORLD, sys.argv[1]), nprocs=WORLD, join=True)
