"""Selection overhead as a share of a real training epoch, where users feel it.

For each case (data set x model x num_workers) four arms train side by side in one
process, alternating epoch by epoch (the starting arm rotates every repetition), each
with its own model (same initial weights), Adam optimiser and DataLoader:

- ``plain``: PyTorch's ``DataLoader(shuffle=True)`` and no ``update`` call, the zero;
- ``random``, ``ml_unc``, ``d2ace``: our batch sampler with that selector, ``update``
  after every step (warm-up of one epoch, so every timed epoch is a weighted epoch).

One untimed epoch per arm first, then ``--reps`` timed epochs per arm; medians. Each
arm's extra time over ``plain`` is split into:

- update: the ``sampler.update`` calls, timed around each call here;
- scoring: the epoch's scoring (``sampler.probabilities`` at the epoch start, which
  runs the sampler's per-epoch preparation, plus one copy of P);
- drawing: the rest of ``sampler.overhead_seconds`` (the per-batch draws);
- other: what the epoch pays beyond those (hidden copies, synchronisations, Python,
  cache and thread-pool effects): extra time - update - scoring - drawing; noise makes
  it negative at times.

Cases: MLP and CLIF on yeast, scene, cal500 (``D2ACE_DATA_DIR``; a missing set is
skipped with a message), a 2 x 1024 MLP on synthetic sets of the mediamill (31,600 x
101, d = 120) and MS-COCO-feature (82,000 x 80, d = 2048) shapes, and the ``make demo``
shape (n = 1,920, q = 14, 15 batches; with the demo's per-item data path,
``IndexedDataset`` + default collate, where the other cases fetch whole batches in one
indexing op so the overhead share is not flattered). ``--quick`` shrinks the synthetic sets 8x and
takes 3 repetitions, so everything runs in a few minutes on two cores.

    python benchmarks/bench_overhead.py [--quick] [--sets yeast,demo] [--models mlp] [--workers 0,2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from d2ace_ext import D2ACEConfig, IndexedDataset, build_info, make_sampler
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.harness.fold_run import TensorBatches as Rows
from d2ace_ext.harness.fold_run import whole_batch
from d2ace_ext.models import make_model
from d2ace_ext.neighbors import random_neighbors

BATCH = 128
REAL_SETS = ["yeast", "scene", "cal500"]
#: name: (n, q, d, label cardinality) of the synthetic stand-ins
SYNTHETIC = {"mediamill": (31600, 101, 120, 4.38), "mscoco": (82000, 80, 2048, 2.90)}
ARMS = ["plain", "random", "ml_unc", "d2ace"]


class WideMLP(nn.Module):
    """d -> 1024 -> 1024 -> q logits: a realistic head on precomputed features."""

    def __init__(self, d: int, q: int, width: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, q)
        )

    def forward(self, x):
        return self.net(x)

    def objective(self, x, y):
        logits = self(x)
        return logits, F.binary_cross_entropy_with_logits(logits, y)


@dataclass
class Case:
    name: str
    model: str
    x: torch.Tensor
    y: torch.Tensor
    neighbors: torch.Tensor | None = None  # precomputed K-NN stand-in for large synthetic sets
    per_item: bool = False  # the README / make demo data path: IndexedDataset + default collate


@dataclass
class Arm:
    name: str
    model: nn.Module
    optimiser: torch.optim.Optimizer
    loader: DataLoader
    sampler: object | None
    epoch: int = 0
    rows: list = field(default_factory=list)


def data_dir() -> str | None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.environ.get("D2ACE_DATA_DIR") or os.path.join(here, "..", "shared", "data")
    return folder if os.path.isdir(folder) else None


def min_max(x: torch.Tensor) -> torch.Tensor:
    low = x.min(0).values
    return ((x - low) / (x.max(0).values - low).clamp(min=1e-12)).float()


def load_cases(sets: list[str], models: list[str], shrink: int) -> list[Case]:
    cases = []
    for name in sets:
        if name in REAL_SETS:
            folder = data_dir()
            try:
                from d2ace_ext.datasets.mulan import load_mulan

                features, labels = load_mulan(name, folder)
            except Exception as error:  # a missing folder or set: say so and go on
                print(f"skipping {name}: cannot read it from D2ACE_DATA_DIR={folder!r} ({error})", flush=True)
                continue
            x, y = min_max(torch.as_tensor(features, dtype=torch.float64)), torch.as_tensor(labels).float()
            cases += [Case(name, m, x, y) for m in models]
        elif name in SYNTHETIC:
            n, q, d, card = SYNTHETIC[name]
            n //= shrink
            x, y = make_multilabel(n=n, d=d, q=q, cardinality=card, seed=0)
            # The K-NN is a one-off cost before training: random neighbours stand in.
            neighbors = random_neighbors(n, 6, torch.Generator().manual_seed(1))
            cases.append(Case(f"{name}/{shrink}" if shrink > 1 else name, "mlp2x1024", x, y, neighbors))
        elif name == "demo":
            # make demo's set: synthetic yeast shape, 80 % of 2,400 rows for training.
            x, y = make_multilabel(n=2400, d=100, q=14, cardinality=4.0, seed=0)
            cases.append(Case("demo", "mlp", x[:1920], y[:1920], per_item=True))
        else:
            raise SystemExit(f"unknown set {name!r}: choose from {REAL_SETS + list(SYNTHETIC) + ['demo']}")
    return cases


def build_arm(name: str, case: Case, workers: int) -> Arm:
    n, q = case.y.shape
    torch.manual_seed(0)  # every arm starts from the same weights
    if case.model == "mlp2x1024":
        model = WideMLP(case.x.shape[1], q)
    else:
        model = make_model(case.model, case.x.shape[1], q, train_labels=case.y)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    extra = {"num_workers": workers, "persistent_workers": workers > 0}
    if case.per_item:
        dataset = IndexedDataset(TensorDataset(case.x, case.y))
    else:
        dataset, extra["collate_fn"] = Rows(case.x, case.y), whole_batch  # the harness's own one-op batch path
    if name == "plain":
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, **extra)
        return Arm(name, model, optimiser, loader, None)
    if name == "d2ace":
        options = {"config": D2ACEConfig(num_epochs=100, warmup_epochs=1)}
        if case.neighbors is not None:
            options["neighbors"] = case.neighbors
    elif name == "ml_unc":
        options = {"num_epochs": 100, "warmup_epochs": 1}
    else:
        options = {}
    features = case.x if case.neighbors is None else None
    sampler = make_sampler(name, case.y, BATCH, features, seed=0, **options)
    loader = DataLoader(dataset, batch_sampler=sampler, **extra)
    return Arm(name, model, optimiser, loader, sampler)


def run_epoch(arm: Arm) -> dict:
    """One training epoch of ``arm``; returns its timings in seconds."""
    sampler = arm.sampler
    started = time.perf_counter()
    scoring = update = 0.0
    calls = 0
    if sampler is not None:
        sampler.set_epoch(arm.epoch)
        before = sampler.overhead_seconds
        sampler.probabilities  # noqa: B018 - the epoch's preparation (scoring), timed apart
        scoring = time.perf_counter() - started
    arm.model.train()
    for index, x, y in arm.loader:
        logits, loss = arm.model.objective(x, y)
        arm.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        arm.optimiser.step()
        if sampler is not None:
            tick = time.perf_counter()
            sampler.update(index, logits.detach(), y)
            update += time.perf_counter() - tick
            calls += 1
    wall = time.perf_counter() - started
    arm.epoch += 1
    if sampler is None:
        return {"wall": wall}
    overhead = sampler.overhead_seconds - before
    return {
        "wall": wall,
        "update": update,
        "scoring": scoring,
        "select": overhead,
        "drawing": max(0.0, overhead - update - scoring),
        "per_call": update / max(1, calls),
    }


def measure(case: Case, workers: int, reps: int) -> dict:
    arms = [build_arm(name, case, workers) for name in ARMS]
    for arm in arms:
        run_epoch(arm)  # warm-up: the shuffled epoch that fills the records
    for rep in range(reps):
        for k in range(len(arms)):
            arm = arms[(rep + k) % len(arms)]
            arm.rows.append(run_epoch(arm))
    result = {}
    for arm in arms:
        result[arm.name] = {key: statistics.median(row[key] for row in arm.rows) for key in arm.rows[0]}
    del arms  # ends persistent workers before the next case
    return result


def print_case(case: Case, workers: int, result: dict, out) -> None:
    n, q = case.y.shape
    plain = result["plain"]["wall"]
    batches = -(-n // BATCH)
    out(
        f"{case.name} {case.model} n={n} q={q} d={case.x.shape[1]} batches={batches} num_workers={workers}: "
        f"plain epoch {plain * 1e3:.1f} ms"
    )
    for name in ARMS[1:]:
        r = result[name]
        extra = r["wall"] - plain
        other = extra - r["update"] - r["scoring"] - r["drawing"]
        out(
            f"| {case.name} | {case.model} | {workers} | {name} | {r['wall'] * 1e3:.1f} | {plain * 1e3:.1f} | "
            f"{extra * 1e3:+.1f} ({extra / plain * 100:+.1f} %) | {r['select'] * 1e3:.2f} | {r['per_call'] * 1e3:.3f} | "
            f"{r['update'] * 1e3:.2f} | {r['scoring'] * 1e3:.2f} | {r['drawing'] * 1e3:.2f} | {other * 1e3:+.1f} |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="yeast,scene,cal500,mediamill,mscoco,demo")
    parser.add_argument("--models", default="mlp,clif", help="models for the real sets")
    parser.add_argument("--workers", default="0,2", help="num_workers values")
    parser.add_argument("--reps", type=int, default=None, help="timed epochs per arm (default 5, --quick 3)")
    parser.add_argument("--shrink", type=int, default=None, help="divide synthetic n by this (default 1, --quick 8)")
    parser.add_argument("--quick", action="store_true", help="synthetic sets 8x smaller, 3 repetitions")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's own setting); 1 on a loaded machine",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = args.reps or (3 if args.quick else 5)
    shrink = args.shrink or (8 if args.quick else 1)
    info = build_info()
    print(
        f"torch {info['torch']}, threads {torch.get_num_threads()}, native extension {info['extension_loaded']}, "
        f"{os.cpu_count()} CPUs; {reps} timed epochs per arm, alternating; medians in ms",
        flush=True,
    )
    cases = load_cases(
        [s.strip() for s in args.sets.split(",") if s.strip()],
        [m.strip() for m in args.models.split(",") if m.strip()],
        shrink,
    )
    header = (
        "| set | model | workers | selector | epoch | plain | extra vs plain | select | update/call | "
        "update | scoring | drawing | other |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines, shares = [], []
    for workers in (int(w) for w in args.workers.split(",")):
        for case in cases:
            result = measure(case, workers, reps)
            print_case(case, workers, result, lambda text: (print(text, flush=True), lines.append(text)))
            shares.append(share_row(case, workers, result))
    print("\nall cases (ms; select = sampler.overhead_seconds per epoch; other = extra - update - scoring - drawing):")
    print(header)
    for line in lines:
        if line.startswith("|"):
            print(line)
    print("\nselection time as a share of the plain epoch (select / plain), and D2ACE's measured extra wall time:")
    print(
        "| set | model | workers | plain ms | random | ml_unc | d2ace | d2ace extra wall |\n|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(shares))
    return 0


def share_row(case: Case, workers: int, result: dict) -> str:
    """One line of the compact table: each selector's own time (update, scoring,
    drawing, as the sampler accounts it) over the plain epoch; on a loaded machine this
    is steadier than the difference of two noisy epoch times, shown last."""
    plain = result["plain"]["wall"]
    cells = " | ".join(
        f"{result[a]['select'] * 1e3:.1f} ms ({result[a]['select'] / plain * 100:.1f} %)" for a in ARMS[1:]
    )
    extra = (result["d2ace"]["wall"] - plain) / plain * 100
    return f"| {case.name} | {case.model} | {workers} | {plain * 1e3:.1f} | {cells} | {extra:+.1f} % |"


if __name__ == "__main__":
    sys.exit(main())
