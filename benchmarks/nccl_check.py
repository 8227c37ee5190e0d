"""The sampler's collectives under NCCL, for a machine with GPUs (gpu_check.sh's ``nccl``).

    python benchmarks/nccl_check.py [--world R] [--backend nccl|gloo]

One rank per GPU (at most 4; ``--world`` to choose). Part 1, any world size (one GPU
included): the per-step exchanges and the scoring collectives on CUDA tensors through
the process group's device: a replicated gather, a routed exchange, a sum, a row
gather, a broadcast, and an invalid step on the last rank that every rank must raise
alike. Part 2, with 2 or more GPUs: D2ACE (both presets), ML-Unc and InfoBatch with the
state on the GPU, a row-sharded run against a replicated one: the same batches every
epoch. ``--backend gloo`` runs the same checks on CPU tensors (this script's own test).
Prints one line per check; exit status 1 if any failed, 77 when there is no GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from d2ace_ext import distributed, make_sampler  # noqa: E402
from d2ace_ext.row_shard import RowShard  # noqa: E402

N, Q, BATCH, EPOCHS = 64, 6, 16, 5
CASES = {
    "d2ace paper": (
        "d2ace",
        dict(preset="paper", num_epochs=EPOCHS, warmup_epochs=2, t_start=2, t_end=4, num_neighbors=3),
    ),
    "d2ace reference": (
        "d2ace",
        dict(preset="reference", num_epochs=EPOCHS, warmup_epochs=2, t_start=2, t_end=4, num_neighbors=3),
    ),
    "ml_unc": ("ml_unc", dict(num_epochs=EPOCHS, warmup_epochs=2)),
    "infobatch": ("infobatch", dict(num_epochs=EPOCHS)),
}


def check(name: str, ok: bool, failures: list, rank: int) -> None:
    if rank == 0:
        print(f"{'PASS' if ok else 'FAIL'} {name}", flush=True)
    if not ok:
        failures.append(name)


def primitives(rank: int, world: int, device: torch.device, failures: list) -> None:
    g = torch.Generator().manual_seed(rank)
    rows = 3 + rank  # shards of different sizes: the gather pads
    index = torch.arange(rank, N, world)[:rows]
    outputs = torch.randn(rows, Q, generator=g).to(device)
    targets = (torch.rand(rows, Q, generator=g) < 0.5).float().to(device)
    got_index, got_outputs, got_targets = distributed.gather_records(index, outputs, targets)
    everyone = [torch.arange(r, N, world)[: 3 + r] for r in range(world)]
    check(
        "gather_records: every rank's rows in rank order",
        torch.equal(got_index, torch.cat(everyone))
        and got_outputs.device == device
        and got_outputs.shape == (len(got_index), Q),
        failures,
        rank,
    )
    shard = RowShard(N, world, rank)
    routed, routed_outputs, _ = distributed.route_records(index, outputs, targets, shard.owner(index))
    mine = torch.cat(everyone)
    check(
        "route_records: exactly the rows this rank owns",
        sorted(routed.tolist()) == sorted(mine[shard.owner(mine) == rank].tolist()) and routed_outputs.device == device,
        failures,
        rank,
    )
    total = distributed.all_sum(torch.full((4,), float(rank + 1), dtype=torch.float64, device=device))
    check("all_sum", total.device == device and bool((total == world * (world + 1) / 2).all()), failures, rank)
    local = shard.rows(device).to(torch.float64)
    check(
        "RowShard.gather: global order",
        torch.equal(shard.gather(local).cpu(), torch.arange(N, dtype=torch.float64)),
        failures,
        rank,
    )
    broadcast = distributed.from_rank_zero(torch.full((5,), float(rank), dtype=torch.float64, device=device))
    check("from_rank_zero", bool((broadcast == 0).all()), failures, rank)
    error = ValueError("outputs contain NaN (logits)") if rank == world - 1 else None
    try:
        distributed.agree(error)
        raised = None
    except ValueError as exc:
        raised = str(exc)
    check(
        "agree: the last rank's error on every rank",
        raised == f"rank {world - 1}: outputs contain NaN (logits)",
        failures,
        rank,
    )


def runs(rank: int, world: int, device: torch.device, failures: list) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(N, 4, generator=g), (torch.rand(N, Q, generator=g) < 0.4).float()
    for case, (name, options) in CASES.items():
        seen = {}
        for sharded in (False, True):
            sampler = make_sampler(
                name, y.to(device), BATCH, x.to(device), seed=3, device=device, shard_state=sharded, **options
            )
            seen[sharded] = []
            for epoch in range(EPOCHS):
                sampler.set_epoch(epoch)
                for batch in sampler:
                    index = torch.tensor(batch)
                    logits = torch.sin(index.double().unsqueeze(1) * 1.3 + epoch + torch.arange(Q)).float() * 3
                    sampler.update(index, logits.to(device), y[index].to(device))
                    seen[sharded].append(batch)
        check(
            f"{case}: a sharded state on {device.type} draws the replicated batches",
            seen[True] == seen[False],
            failures,
            rank,
        )


def rank_main(rank: int, world: int, backend: str, rendezvous: str) -> None:
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    failures: list = []
    try:
        primitives(rank, world, device, failures)
        if world > 1:
            runs(rank, world, device, failures)
        elif rank == 0:
            print("SKIP sharded against replicated runs: they need 2 or more ranks (one GPU each under NCCL)")
    except Exception:  # a crash is a failure of this rank, reported, not a hang of the others
        traceback.print_exc()
        failures.append("exception")
    dist.destroy_process_group()
    if failures:
        sys.exit(1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["nccl", "gloo"], default="nccl")
    parser.add_argument("--world", type=int, default=None, help="ranks (default: the GPUs, at most 4; gloo: 2)")
    args = parser.parse_args(argv)
    if args.backend == "nccl" and not (torch.cuda.is_available() and dist.is_nccl_available()):
        print("SKIP no GPU or no NCCL in this torch build")
        return 77
    world = args.world or (min(4, torch.cuda.device_count()) if args.backend == "nccl" else 2)
    with tempfile.TemporaryDirectory() as folder:
        try:
            mp.spawn(rank_main, args=(world, args.backend, os.path.join(folder, "rendezvous")), nprocs=world, join=True)
        except mp.ProcessRaisedException:
            return 1
        except mp.ProcessExitedException:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
