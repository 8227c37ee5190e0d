"""The selector state past one process: memory, traffic and time per rank, replicated
against row-sharded (``shard_state=True``), with R gloo ranks on this machine.

    python benchmarks/bench_scale.py scale [--n 100000 1000000] [--worlds 1 2 4] [--modes replicated sharded]
    python benchmarks/bench_scale.py collectives [--n 100000] [--worlds 1 2 4]
    make bench-scale BENCH_SCALE_ARGS="scale --n 2000000 --worlds 4 --modes sharded"

``scale``: for each (n, R, mode) R ranks build a D2ACE sampler (paper preset, q = 100,
label cardinality about 4.9, K = 6 neighbours sharing most labels, global batch 1,024), run
one epoch of records (a shuffled warm-up epoch: ⌈n / 1024⌉ updates with random
logits) and one scoring (the next epoch's probabilities); each rank reports its peak
resident memory (``ru_maxrss``, python and torch included), the bytes of its selector
state, the bytes it received per step and in the scoring, and the seconds of each. A
configuration whose estimated memory (docs/scaling.md's formula) exceeds 85 % of what
the machine has available is not started; it is listed as not fitting.

``collectives``: item 2 of issue 28, at n = 10^5, q = 100, global batch 1,024, one
thread per rank: the median ``update`` time per rank in one process and with R ranks,
replicated with the tensor collectives, replicated with the former pickled
``all_gather_object`` (the replaced code, kept below for this comparison), and
sharded; and each per-step exchange alone: pickled gather, tensor gather, tensor
gather then keeping the rows a rank owns (the all-gather alternative to routing),
``all_to_all_single`` routing.

Bytes received per rank are counted at the collectives: an all-gather's output less the
rank's own part, what ``all_to_all_single`` brings from other ranks, 2 (R - 1)/R of an
all-reduced tensor (a ring all-reduce), a broadcast's tensor on ranks other than the
source. Each configuration runs in a fresh process whose ranks are forked from it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from d2ace_ext import D2ACEConfig, D2ACESampler, distributed  # noqa: E402
from d2ace_ext.row_shard import RowShard  # noqa: E402

Q, BATCH, K, CARDINALITY, PROTOTYPES = 100, 1024, 6, 4.4, 1024
CONFIG = D2ACEConfig(num_epochs=2, warmup_epochs=1, num_neighbors=K)
#: bytes per (instance, label) of the replicated D2ACE state: window n_t = 5 (20), loss,
#: flip average, flip base (12), the U/H workspace (8); see docs/scaling.md
STATE_BYTES = 40
#: pairs of Y and Z per instance (int32 pairs; measured: 68 for this problem)
PAIRS = 70
PROCESS_BASE = 600 << 20  # python, torch and the extension, per rank


# -- the synthetic problem ----------------------------------------------------------
def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """labels (n, Q) bool and neighbours (n, K) int64, the same on every rank: each
    instance copies one of PROTOTYPES label sets (CARDINALITY positives on average) with
    0.5 % of its entries flipped, and its K neighbours are random instances of the same
    prototype, so that, as with real features, neighbours mostly share labels."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(PROTOTYPES, Q, generator=g) < CARDINALITY / Q
    cluster = torch.randint(PROTOTYPES, (n,), generator=g)
    labels = torch.empty(n, Q, dtype=torch.bool)
    for start in range(0, n, 1 << 16):
        stop = min(n, start + (1 << 16))
        labels[start:stop] = prototypes[cluster[start:stop]] ^ (torch.rand(stop - start, Q, generator=g) < 0.005)
    order = torch.argsort(cluster, stable=True)
    sizes = torch.bincount(cluster, minlength=PROTOTYPES)
    starts = sizes.cumsum(0) - sizes
    # K distinct other members of the instance's cluster (neighbors= refuses the instance
    # itself and repeats): K consecutive places after a random offset, cyclically within
    # the cluster; a cluster of K or fewer members takes them from the whole order instead.
    place = torch.empty(n, dtype=torch.int64)
    place[order] = torch.arange(n)
    size, start = sizes[cluster], starts[cluster]
    span = torch.where(size > K, size, torch.full_like(size, n))
    base = torch.where(size > K, start, torch.zeros_like(start))
    offset = 1 + (torch.rand(n, generator=g) * (span - K).to(torch.float64)).long()
    steps = (place - base + offset).unsqueeze(1) + torch.arange(K)
    return labels, order[base.unsqueeze(1) + steps % span.unsqueeze(1)]


def estimated_bytes(n: int, world: int, sharded: bool) -> int:
    """Resident bytes per rank by docs/scaling.md's formula (peak, scoring included)."""
    rows = -(-n // world) if sharded else n
    return PROCESS_BASE + rows * (Q * STATE_BYTES + 8 * PAIRS) + n * (Q + 8 * K + 48)


def available_bytes() -> int:
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# -- counting the bytes each rank receives ------------------------------------------
class Traffic:
    """Wraps torch.distributed's collectives in this process to count received bytes."""

    def __init__(self) -> None:
        self.bytes, self.calls = 0, 0

    def reset(self) -> tuple[int, int]:
        seen = (self.bytes, self.calls)
        self.bytes, self.calls = 0, 0
        return seen

    def install(self) -> None:
        world, rank = dist.get_world_size(), dist.get_rank()

        def wrap(name, received):
            original = getattr(dist, name, None)
            if original is None:
                return

            def counted(*args, **kwargs):
                self.bytes += received(*args, **kwargs)
                self.calls += 1
                return original(*args, **kwargs)

            setattr(dist, name, counted)

        gathered = lambda out, inp, *a, **k: out.nbytes - inp.nbytes  # noqa: E731
        wrap("all_gather_single", gathered)
        wrap("all_gather_into_tensor", gathered)

        def routed(out, inp, out_splits=None, in_splits=None, *a, **k):
            row = out.nbytes // max(1, out.shape[0])
            own = (out_splits[rank] if out_splits is not None else out.shape[0] // world) * row
            return out.nbytes - own

        wrap("all_to_all_single", routed)
        wrap("all_reduce", lambda t, *a, **k: 2 * (world - 1) * t.nbytes // world)
        wrap("broadcast", lambda t, src=0, *a, **k: 0 if rank == src else t.nbytes)
        wrap("all_gather_object", lambda out, obj, *a, **k: 0)  # pickled: counted by the caller


def selector_bytes(sampler) -> int:
    """Bytes of the selector's per-instance tensors: visit state, workspace, labels, Y, Z
    and their pairs (what scales with the rows held)."""
    selector = sampler.selector
    tensors = [getattr(selector.visits, name) for name in selector.visits.TENSORS]
    tensors.append(selector.visits.workspace())
    tensors.append(selector.labels)
    context = selector.context
    for rows in (context.labels, context.context):
        tensors += [rows.rows, rows.cols, rows.row_ptr]
    tensors += [*context.label_pairs, *context.context_pairs]
    return sum(t.nbytes for t in tensors)


# -- one (n, R, mode) configuration of `scale` -----------------------------------------
def scale_rank(rank: int, world: int, n: int, sharded: bool, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    traffic = Traffic()
    traffic.install()
    labels, neighbors = synthetic(n)
    started = time.perf_counter()
    sampler = D2ACESampler(labels, BATCH, neighbors=neighbors, config=CONFIG, seed=0, shard_state=sharded)
    del neighbors
    build_s = time.perf_counter() - started
    g = torch.Generator().manual_seed(1000 + rank)
    dist.barrier()
    traffic.reset()
    sampler.set_epoch(0)
    started, steps = time.perf_counter(), 0
    for batch in sampler:
        index = torch.tensor(batch)
        sampler.update(index, torch.randn(len(batch), Q, generator=g) * 2, labels[index])
        steps += 1
    record_s = time.perf_counter() - started
    record_bytes, record_calls = traffic.reset()
    dist.barrier()
    traffic.reset()
    started = time.perf_counter()
    sampler.set_epoch(1)
    probabilities = sampler.probabilities
    score_s = time.perf_counter() - started
    score_bytes, _ = traffic.reset()
    result = {
        "rank": rank,
        "steps": steps,
        "build_s": build_s,
        "record_s": record_s,
        "score_s": score_s,
        "record_bytes": record_bytes,
        "record_calls": record_calls,
        "score_bytes": score_bytes,
        "state_bytes": selector_bytes(sampler),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "p_sum": float(probabilities.sum()),
    }
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


# -- `collectives`: item 2's timings ---------------------------------------------------
_ERRORS = {"TypeError": TypeError, "ValueError": ValueError, "IndexError": IndexError}


def pickled_gather_records(index, outputs, targets, error=None, *, kind="logits"):
    """The replaced per-step gather (d2ace_ext.distributed before issue 28): every rank's
    records as pickled objects through ``all_gather_object``. Kept here only to time it."""
    if error is not None:
        mine = ("error", type(error).__name__, str(error).strip("'\""))
    else:
        mine = ("records", index.cpu(), outputs.cpu(), targets.cpu())
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    failed = [(rank, part) for rank, part in enumerate(parts) if part[0] == "error"]
    if failed:
        rank, (_, kind, message) = failed[0]
        raise _ERRORS.get(kind, ValueError)(f"rank {rank}: {message}")
    device = outputs.device
    return (
        torch.cat([p[1] for p in parts]),
        torch.cat([p[2] for p in parts]).to(device),
        torch.cat([p[3] for p in parts]).to(device),
    )


def _interleaved_medians(calls: dict, repeats: int, warmup: int = 5) -> dict:
    """Median milliseconds of each call, timed round-robin (one of each per round, a
    barrier before each), so that other load on the machine falls on all alike."""
    times = {name: [] for name in calls}
    for round_ in range(warmup + repeats):
        for name, call in calls.items():
            if dist.is_initialized():
                dist.barrier()
            started = time.perf_counter()
            call()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def collectives_rank(rank: int, world: int, n: int, repeats: int, out: str) -> None:
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    labels, neighbors = synthetic(n)
    g = torch.Generator().manual_seed(7)
    result = {"rank": rank}
    modes = (
        {"one process": False}
        if world == 1
        else {"replicated, tensor": False, "replicated, pickled": False, "sharded": True}
    )
    steps = {}
    for mode, sharded in modes.items():
        sampler = D2ACESampler(labels, BATCH, neighbors=neighbors, config=CONFIG, seed=0, shard_state=sharded)
        sampler.set_epoch(0)
        steps[mode] = _stepper(sampler, iter(sampler), labels, g, pickled=mode.endswith("pickled"))
    result["update_ms"] = _interleaved_medians(steps, repeats)
    if world > 1:
        traffic = Traffic()
        traffic.install()
        shard = RowShard(n, world, rank)
        index = torch.randperm(n, generator=torch.Generator().manual_seed(3))[:BATCH][rank::world].clone()
        outputs = torch.randn(len(index), Q, generator=g)
        targets = labels[index].float()
        owner = shard.owner(index)

        def gather_then_keep():
            everything = distributed.gather_records(index, outputs, targets)
            mine = shard.owner(everything[0]) == rank
            return everything[0][mine], everything[1][mine], everything[2][mine]

        exchanges = {
            "pickled all_gather_object": lambda: pickled_gather_records(index, outputs, targets),
            "tensor all-gather (replicated)": lambda: distributed.gather_records(index, outputs, targets),
            "tensor all-gather, keep own rows": gather_then_keep,
            "all_to_all_single routing (sharded)": lambda: distributed.route_records(index, outputs, targets, owner),
        }
        result["exchange_ms"] = _interleaved_medians(exchanges, repeats)
        result["exchange_bytes"] = {}
        for name, call in exchanges.items():
            traffic.reset()
            call()
            result["exchange_bytes"][name] = traffic.reset()[0]
        result["exchange_bytes"]["pickled all_gather_object"] = _pickled_bytes(index, outputs, targets, world)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    if world > 1:
        dist.destroy_process_group()


def _stepper(sampler, batches, labels, g, pickled: bool):
    """One ``update`` of the next batch; with ``pickled``, through the replaced gather."""

    def step():
        index = torch.tensor(next(batches))
        original = distributed.gather_records
        if pickled:
            distributed.gather_records = pickled_gather_records
        try:
            sampler.update(index, torch.randn(len(index), Q, generator=g), labels[index])
        finally:
            distributed.gather_records = original

    return step


def _pickled_bytes(index, outputs, targets, world) -> int:
    import io
    import pickle

    buffer = io.BytesIO()
    pickle.dump(("records", index, outputs, targets), buffer)
    return (world - 1) * buffer.tell()  # the other ranks' payloads, about the size of this one's


# -- driving the configurations ---------------------------------------------------------
def run_one(kind: str, world: int, options: dict) -> list[dict]:
    """One configuration in a fresh process: its ranks' results, rank order."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, os.path.abspath(__file__), "_ranks", kind, str(world), json.dumps(options), out]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{kind} {world} {options} failed:\n{run.stderr[-3000:]}")
        return [json.load(open(os.path.join(out, f"rank{r}.json"))) for r in range(world)]


def _ranks(kind: str, world: int, options: dict, out: str) -> None:
    if kind == "scale":
        target, args = scale_rank, (world, options["n"], options["sharded"], out)
    else:
        target, args = collectives_rank, (world, options["n"], options["repeats"], out)
    if kind == "collectives" and world == 1:  # one process, no process group: today's single-process update
        target(0, *args)
        return
    mp.start_processes(target, args=args, nprocs=world, join=True, start_method="fork")


def gb(x: float) -> str:
    return f"{x / 2**30:.2f}"


def scale(args) -> None:
    print(
        f"q = {Q}, global batch {BATCH}, K = {K}, about {CARDINALITY + 0.005 * Q:.1f} labels an instance; "
        f"{os.cpu_count()} cores, 1 thread per rank; {torch.__version__}"
    )
    print(
        "| n | ranks | state | est. GiB/rank | peak RSS GiB/rank (max) | selector state GiB/rank | "
        "KiB received/step | MiB received/epoch (records) | MiB received (scoring) | s build | s records | "
        "s scoring |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        for world in args.worlds:
            for mode in args.modes:
                sharded = mode == "sharded"
                if world == 1 and sharded and "replicated" in args.modes:
                    continue  # one rank holds every row either way
                estimate = estimated_bytes(n, world, sharded)
                if world * estimate > 0.85 * available_bytes():
                    print(
                        f"| {n:,} | {world} | {mode} | {gb(estimate)} | does not fit: {world} × {gb(estimate)} GiB "
                        f"> 85 % of {gb(available_bytes())} GiB available | | | | | | | |",
                        flush=True,
                    )
                    continue
                ranks = run_one("scale", world, {"n": n, "sharded": sharded})
                steps = ranks[0]["steps"]
                worst = lambda key: max(r[key] for r in ranks)  # noqa: E731
                print(
                    f"| {n:,} | {world} | {mode} | {gb(estimate)} | {gb(worst('peak_rss'))} | "
                    f"{gb(worst('state_bytes'))} | {worst('record_bytes') / steps / 1024:.1f} | "
                    f"{worst('record_bytes') / 2**20:.1f} | {worst('score_bytes') / 2**20:.1f} | "
                    f"{worst('build_s'):.1f} | {worst('record_s'):.1f} | {worst('score_s'):.1f} |",
                    flush=True,
                )


def collectives(args) -> None:
    for n in args.n:
        print(
            f"n = {n:,}, q = {Q}, global batch {BATCH}, gloo, 1 thread per rank; medians of {args.repeats} "
            "rounds, the variants timed round-robin (rank 0's, and the slowest rank's)"
        )
        print("| ranks | update: mode | ms per step (rank 0) | ms (slowest rank) |")
        print("|---|---|---|---|")
        exchange_rows = []
        for world in args.worlds:
            ranks = run_one("collectives", world, {"n": n, "repeats": args.repeats})
            for mode in ranks[0]["update_ms"]:
                print(
                    f"| {world} | {mode} | {ranks[0]['update_ms'][mode]:.2f} | "
                    f"{max(r['update_ms'][mode] for r in ranks):.2f} |",
                    flush=True,
                )
            for name in ranks[0].get("exchange_ms", {}):
                exchange_rows.append(
                    (
                        world,
                        name,
                        ranks[0]["exchange_ms"][name],
                        max(r["exchange_ms"][name] for r in ranks),
                        max(r["exchange_bytes"][name] for r in ranks),
                    )
                )
        print()
        print("| ranks | one step's exchange alone | ms (rank 0) | ms (slowest rank) | KiB received per rank |")
        print("|---|---|---|---|---|")
        for world, name, ms, slowest, received in exchange_rows:
            print(f"| {world} | {name} | {ms:.2f} | {slowest:.2f} | {received / 1024:.1f} |")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_ranks":
        _ranks(argv[1], int(argv[2]), json.loads(argv[3]), argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scale", help="memory, traffic and time per rank, replicated vs sharded")
    s.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    s.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    s.add_argument("--modes", nargs="+", choices=["replicated", "sharded"], default=["replicated", "sharded"])
    c = sub.add_parser("collectives", help="update and per-step exchange times (issue 28 item 2)")
    c.add_argument("--n", type=int, nargs="+", default=[100_000])
    c.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    c.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args(argv)
    (scale if args.command == "scale" else collectives)(args)


if __name__ == "__main__":
    main()
