"""Run by tests/test_sharded_state.py: WORLD gloo ranks drive row-sharded samplers of
every selector and save what each rank saw. Usage:

    python -m support.ddp_shard_worker OUT_DIR WORLD [RESUME_DIR RESUME_WORLD]

For every case of :data:`CASES` each rank drives a replicated sampler (today's) and a
row-sharded one and saves, for each, its shards of the batches, the epochs'
probabilities, its state_dict at the checkpoint step (mid-epoch) and at the end. With
RESUME_DIR, each rank also loads every rank's sharded checkpoint of that
RESUME_WORLD-rank run into a replicated and a sharded sampler (re-sharding them) and
continues both to the end, saving the batches each saw.
"""

import math
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from d2ace_ext import make_sampler

N, Q, BATCH, EPOCHS, SEED = 34, 4, 8, 5, 3  # the last global batch, 2, is topped up for 4 ranks
CHECKPOINT = (3, 2)  # (epoch, batches of it done) at which the state is saved
D2ACE = dict(num_epochs=EPOCHS, warmup_epochs=2, t_start=2, t_end=4, num_neighbors=3)
SCHEDULED = dict(num_epochs=EPOCHS, warmup_epochs=2)
#: case -> (registry name, sampler and selector options)
CASES = {
    "d2ace_paper": ("d2ace", dict(preset="paper", **D2ACE)),
    "d2ace_reference": ("d2ace", dict(preset="reference", **D2ACE)),
    "d2ace_budget": ("d2ace", dict(preset="paper", budget=0.5, anneal=0.34, **D2ACE)),
    "d2ace_bfloat16": ("d2ace", dict(preset="paper", state_dtype="bfloat16", **D2ACE)),
    "d2ace_no_correlation": ("d2ace", dict(preset="paper", ablation="no_correlation", **D2ACE)),
    "d2ace_linear_weights": ("d2ace", dict(preset="reference", ablation="linear_label_weights", **D2ACE)),
    "active": ("active", SCHEDULED),
    "recent": ("recent", dict(quantizer="rank", **SCHEDULED)),
    "dihcl": ("dihcl", SCHEDULED),
    "hard_imb": ("hard_imb", SCHEDULED),
    "ml_unc": ("ml_unc", SCHEDULED),
    "infobatch": ("infobatch", dict(num_epochs=EPOCHS, prune_ratio=0.5, selector_options={"anneal": 0.2})),
    "random": ("random", {}),
    "balance": ("balance", {}),
}


def problem():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, 5, generator=g), (torch.rand(N, Q, generator=g) < 0.4).float()


def logits_for(index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Deterministic stand-in for a model: the same logits whichever rank sees the index."""
    return torch.sin(index.double().unsqueeze(1) * 1.3 + epoch * 0.7 + torch.arange(Q)).float() * 3


def build(case: str, shard_state: bool, **world):
    name, options = CASES[case]
    x, y = problem()
    return make_sampler(name, y, BATCH, x, seed=SEED, shard_state=shard_state, **world, **options), y


def drive(sampler, labels, start=None):
    """Epochs up to EPOCHS (from ``start`` = (epoch, batches done) of a loaded state):
    (batches seen, probabilities of each epoch, state at CHECKPOINT)."""
    seen, probabilities, checkpoint = [], [], None
    first = 0 if start is None else start[0]
    for epoch in range(first, EPOCHS):
        sampler.set_epoch(epoch)
        done = start[1] if start is not None and epoch == start[0] else 0
        for batch in sampler:
            index = torch.tensor(batch)
            sampler.update(index, logits_for(index, epoch), labels[index])
            seen.append(batch)
            done += 1
            if (epoch, done) == CHECKPOINT:
                checkpoint = sampler.state_dict()
        probabilities.append(sampler.probabilities)
    return seen, probabilities, checkpoint


def bad_steps(sampler, labels, rank: int, world: int) -> list:
    """One invalid update per kind, each made by one rank only; the errors each rank saw."""

    def attempt(index, logits, targets):
        try:
            sampler.update(index, logits, targets)
        except (TypeError, ValueError, IndexError) as exc:
            return type(exc).__name__, str(exc)
        return None

    mine = torch.tensor([2 * rank, 2 * rank + 1])  # distinct over the ranks; 2r + 1 is owned by rank 1 for r = 0
    errors = []
    logits = torch.zeros(2, Q)
    if rank == 1:
        logits[0, 1] = math.nan
    errors.append(attempt(mine, logits, labels[mine]))  # NaN outputs on rank 1
    targets = labels[mine].clone()
    if rank == 0:
        targets[1] = 1 - targets[1]  # instance 1: sent by rank 0, owned (and checked) by rank 1
    errors.append(attempt(mine, torch.zeros(2, Q), targets))  # targets differ
    shared = torch.tensor([5, 6 + rank])  # instance 5 on every rank
    errors.append(attempt(shared, torch.zeros(2, Q), labels[shared]))  # one instance on two ranks
    errors.append(attempt(mine, torch.zeros(2, Q), labels[mine]))  # the group still works
    return errors


def rank_main(rank: int, world: int, out_dir: str, resume_dir: str | None, resume_world: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    saved = {}
    for case in CASES:
        result = {}
        for mode, sharded in (("replicated", False), ("sharded", True)):
            sampler, y = build(case, sharded)
            seen, probabilities, checkpoint = drive(sampler, y)
            result[mode] = {
                "seen": seen,
                "probabilities": probabilities,
                "checkpoint": checkpoint,
                "state": sampler.state_dict(),
                "sharded": sampler.shard_state,
            }
        if resume_dir is not None:
            states = [
                torch.load(os.path.join(resume_dir, f"rank{r}.pt"), weights_only=False)[case]["sharded"]["checkpoint"]
                for r in range(resume_world)
            ]
            for mode, sharded in (("resumed_replicated", False), ("resumed_sharded", True)):
                resumed, y = build(case, sharded)
                resumed.load_state_dict(states)
                result[mode] = drive(resumed, y, start=CHECKPOINT)[0]
        if case == "d2ace_paper":
            result["errors"] = bad_steps(sampler, y, rank, world)
        saved[case] = result
    torch.save(saved, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    out, world = sys.argv[1], int(sys.argv[2])
    resume = (sys.argv[3], int(sys.argv[4])) if len(sys.argv) > 4 else (None, 0)
    # fork: the ranks share the parent's imports instead of importing torch again each
    mp.start_processes(rank_main, args=(world, out, *resume), nprocs=world, join=True, start_method="fork")
