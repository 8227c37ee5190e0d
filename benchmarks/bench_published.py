"""D2ACE's selection cost per epoch: the library's sampler against the authors' published
code, timed in one process on the same synthetic set.

    python benchmarks/bench_published.py --published-src DIR [--shape mediamill|demo] [--batches K] [--repeats 5]
                                         [--rounds R]

DIR is a checkout of the published code (``git clone https://github.com/iunanyou/D2ACE DIR``,
outside this project; or the environment variable D2ACE_PUBLISHED_SRC). Without it the
script says how to get it and exits 0 ("skipped"). Its per-batch functions and its
end-of-epoch scoring statements are read from DIR/main.py at run time
(``published_code.py``); none of that code is part of this project.

Both sides get the same labels (``make_multilabel``, seed 0), the same K-NN (6 nearest
plus the instance itself, the published rule), the same batches (one permutation of the
n instances, ⌈n/b⌉ batches) and the same random logits (N(0, 4), seed 2):

- published: after each batch the four calls of its training loop (``update_L``,
  ``update_H``, ``update_ema_flip``, ``update_E``), given the batch's per-label BCE and
  sigmoid probabilities as its model's loss provides them (computed beforehand), with
  every history deque holding its 5 entries; then its end-of-epoch scoring block;
- library: ``sampler.update(indices, logits, targets)`` per batch (which computes the
  probabilities and BCE itself) and the next epoch's scoring (``selector.score``), with
  the ``reference`` preset (the published code's behaviour) and every window full (the
  steady state of ``pipeline_state.py``).

Clock: the CPU time of the calling thread (``time.thread_time``), torch and BLAS on one
thread, as in ``selection_cpu_time.py``: on a shared machine wall-clock time swings
with the load; the wall-clock totals are printed too. ``--batches K`` times only the
first K batches of the published per-batch loop (one takes ~0.1 s at the mediamill
shape) and extrapolates to ⌈n/b⌉, said so in the table. Library: medians of
``--repeats`` epochs after one untimed epoch; published scoring: median of ``--repeats``
runs after one untimed run. ``--rounds R`` measures both sides R times, alternately,
and prints each round's ratio and their median: on a shared machine one round's ratio
moves by a third from one minute to the next, on both sides; the table then holds the
field by field medians over the rounds.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from pipeline_state import BATCH, SHAPES, fill_windows, synthetic_set
from published_code import PublishedCodeError, load, main_py
from threadpoolctl import threadpool_limits
from torch.utils.data import Subset, TensorDataset

from d2ace_ext import D2ACEConfig, D2ACESampler
from d2ace_ext.neighbors import nearest_neighbors

#: name: (n, q, label cardinality); "demo" is ``make demo``'s shape (15 batches), for a quick run
BENCH_SHAPES = {"mediamill": SHAPES["mediamill"], "demo": (1920, 14, 4.24)}
NEIGHBORS = 6
HISTORY = 5  # the published deques' maxlen: n_t
EPOCH = 20  # a selection epoch past the warm-up, fed to both schedules
NUM_EPOCHS = 100
THREADS = 1  # torch and BLAS, on both sides: the CPU time of one thread is then all the work
HOW_TO_GET = (
    "get it outside this project with `git clone https://github.com/iunanyou/D2ACE <dir>` and pass "
    "--published-src <dir> (or set D2ACE_PUBLISHED_SRC; make bench-published PUBLISHED_SRC=<dir>)"
)


@dataclass
class Inputs:
    """One epoch's inputs, shared by both sides. batches: ⌈n/b⌉ index tensors (≤ b,);
    logits, probs, losses, targets: per batch (≤ b, q) float32."""

    labels: torch.Tensor
    features: torch.Tensor
    neighbors: torch.Tensor  # (n, K) int64, self excluded
    batches: list = field(default_factory=list)
    logits: list = field(default_factory=list)
    probs: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    targets: list = field(default_factory=list)


def make_inputs(n: int, q: int, cardinality: float) -> Inputs:
    """The synthetic set of a shape (``pipeline_state.synthetic_set``), its exact K-NN and
    one epoch's batches with logits, probabilities, per-label BCE and targets."""
    features, labels = synthetic_set(n, q, cardinality)
    inputs = Inputs(labels, features, nearest_neighbors(features, NEIGHBORS, "exact"))
    g = torch.Generator().manual_seed(2)
    for index in torch.randperm(n, generator=g).split(BATCH):
        logits = torch.randn(index.numel(), q, generator=g) * 2
        targets = labels[index]
        inputs.batches.append(index)
        inputs.logits.append(logits)
        inputs.probs.append(torch.sigmoid(logits))
        inputs.losses.append(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"))
        inputs.targets.append(targets)
    return inputs


@dataclass
class Seconds:
    """Seconds per epoch, CPU time of this thread and wall-clock."""

    book_cpu: float = 0.0
    book_wall: float = 0.0
    score_cpu: float = 0.0
    score_wall: float = 0.0

    @property
    def total_cpu(self) -> float:
        return self.book_cpu + self.score_cpu

    @property
    def total_wall(self) -> float:
        return self.book_wall + self.score_wall


def timed(fn) -> tuple[float, float]:
    """(CPU seconds of this thread, wall seconds) of one call of fn()."""
    cpu, wall = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - cpu, time.perf_counter() - wall


def medians(runs: list) -> Seconds:
    """Field by field medians of several epochs' Seconds."""
    fields = ("book_cpu", "book_wall", "score_cpu", "score_wall")
    return Seconds(*(statistics.median(getattr(run, name) for run in runs) for name in fields))


# -- library -----------------------------------------------------------------------------
def library_seconds(inputs: Inputs, repeats: int) -> Seconds:
    """Medians over ``repeats`` epochs (after one untimed) of ⌈n/b⌉ updates + one scoring."""
    config = D2ACEConfig.preset("reference", num_neighbors=NEIGHBORS)
    sampler = D2ACESampler(inputs.labels, BATCH, config=config, neighbors=inputs.neighbors)
    fill_windows(sampler, inputs.labels, torch.Generator().manual_seed(0))
    steps = list(zip(inputs.batches, inputs.logits, inputs.targets))

    def updates():
        for index, logits, targets in steps:
            sampler.update(index, logits, targets)

    runs = []
    for r in range(repeats + 1):
        sampler.set_epoch(EPOCH + r)
        book = timed(updates)
        score = timed(lambda: sampler.selector.score(EPOCH + r + 1))
        if r:  # the first epoch is the warm-up
            runs.append(Seconds(*book, *score))
    return medians(runs)


# -- published ---------------------------------------------------------------------------
def published_seconds(code, inputs: Inputs, batches: int, repeats: int) -> Seconds:
    """The published per-batch calls over the first ``batches`` batches (after one
    untimed batch), extrapolated to ⌈n/b⌉, plus the median of ``repeats`` scorings."""
    f = code.functions
    n, q = inputs.labels.shape
    ids = [index.tolist() for index in inputs.batches]
    rng = np.random.default_rng(3)
    L, H = {}, {}
    for _ in range(HISTORY):  # every deque full, as from the fifth visit on
        for k, idx in enumerate(ids):
            L = f["update_L"](L, inputs.losses[k], idx, max_history_length=HISTORY)
            H = f["update_H"](H, inputs.probs[k], idx, max_history_length=HISTORY)
    loader = SimpleNamespace(H=H, E=rng.random((n, q)), sample_probabilities=np.full(n, 1.0 / n))
    state = {"L": L, "ema_flip": rng.random((n, q)) * 0.5}

    def one_batch(k):
        idx = ids[k]
        state["L"] = f["update_L"](state["L"], inputs.losses[k], idx, max_history_length=HISTORY)
        loader.H = f["update_H"](loader.H, inputs.probs[k], idx)
        state["ema_flip"] = f["update_ema_flip"](state["ema_flip"], loader.H, idx, q, alpha=0.7)
        loader.E = f["update_E"](loader.H, loader.E, idx, q)

    def bookkeeping():
        for k in range(1, batches + 1):
            one_batch(k % len(ids))

    with np.errstate(all="ignore"):  # the published module silences warnings at its top
        one_batch(0)  # untimed
        book_cpu, book_wall = timed(bookkeeping)
    scale = len(ids) / batches
    neighbors = torch.cat([torch.arange(n)[:, None], inputs.neighbors], dim=1).numpy()
    scoring_inputs = {
        "ins_dim": n,
        "label_dim": q,
        "L": state["L"],
        "ema_flip": state["ema_flip"],
        "custom_dataloader": loader,
        "train_subset": Subset(TensorDataset(inputs.features, inputs.labels), list(range(n))),
        "nbrs_idx": neighbors,
        "epoch": EPOCH,
        "num_epochs": NUM_EPOCHS,
    }
    loader.sample_probabilities = None
    scores = []
    for r in range(repeats + 1):
        with np.errstate(all="ignore"):
            took = timed(lambda: code.run_scoring(scoring_inputs))
        if r:
            scores.append(took)
        else:
            check_probabilities(code, loader.sample_probabilities, n)
    score_cpu = statistics.median(s[0] for s in scores)
    score_wall = statistics.median(s[1] for s in scores)
    return Seconds(book_cpu * scale, book_wall * scale, score_cpu, score_wall)


def check_probabilities(code, probabilities, n: int) -> None:
    """The scoring block must leave (n,) finite sampling weights on the loader, or it
    did not run what this benchmark means to time."""
    values = np.asarray(probabilities, dtype=float) if probabilities is not None else np.empty(0)
    if values.shape != (n,) or not np.isfinite(values).all():
        first, last = code.scoring_lines
        raise PublishedCodeError(
            f"{code.path}: the scoring block (lines {first}-{last}) left custom_dataloader.sample_probabilities "
            f"of shape {values.shape}, not ({n},) finite values"
        )


# -- report ------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (the machine is often shared)."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def table(published: Seconds, library: Seconds, published_label: str, repeats: int) -> list[str]:
    def row(side, s, digits):
        return f"| {side} | {s.book_cpu:.{digits}f} | {s.score_cpu:.{digits}f} | {s.total_cpu:.{digits}f} |"

    def ratio(a, b):
        return f"{a / b:.0f}x" if b > 0 else "-"

    return [
        "| side | bookkeeping s / epoch | scoring s / epoch | total s / epoch |",
        "|---|---|---|---|",
        row(published_label, published, 2),
        row(f"library (median of {repeats})", library, 4),
        f"| published / library | {ratio(published.book_cpu, library.book_cpu)} | "
        f"{ratio(published.score_cpu, library.score_cpu)} | {ratio(published.total_cpu, library.total_cpu)} |",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--published-src",
        default=os.environ.get("D2ACE_PUBLISHED_SRC"),
        help="a checkout of https://github.com/iunanyou/D2ACE (default: $D2ACE_PUBLISHED_SRC)",
    )
    parser.add_argument("--shape", choices=sorted(BENCH_SHAPES), default="mediamill")
    parser.add_argument("--batches", type=int, default=None, help="time only this many published batches")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="measure both sides this many times, alternately")
    args = parser.parse_args(argv)
    if args.batches is not None and args.batches < 1:
        parser.error(f"--batches must be a positive integer, got {args.batches}")
    for name in ("repeats", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    path = main_py(args.published_src)
    if path is None:
        given = "was not given" if not args.published_src else f"has no main.py at {args.published_src!r}"
        print(f"skipped: the published D2ACE code {given}; {HOW_TO_GET}")
        return 0
    n, q, cardinality = BENCH_SHAPES[args.shape]
    all_batches = math.ceil(n / BATCH)
    batches = min(args.batches or all_batches, all_batches)
    load_before, threads = load_average(), torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        code = load(path)
        with threadpool_limits(THREADS):
            inputs = make_inputs(n, q, cardinality)
            rounds = [
                (published_seconds(code, inputs, batches, args.repeats), library_seconds(inputs, args.repeats))
                for _ in range(args.rounds)
            ]
    except PublishedCodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    published, library = medians([p for p, _ in rounds]), medians([lib for _, lib in rounds])
    label = "published"
    if batches < all_batches:
        label += f" (bookkeeping extrapolated from {batches} of {all_batches} batches)"
    first, last = code.scoring_lines
    print(
        f"shape {args.shape}: n = {n}, q = {q}, b = {BATCH}, {all_batches} batches an epoch; published code "
        f"{path} (scoring: lines {first}-{last})"
    )
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical cores, load average {load_before} at the start, "
        f"{load_average()} at the end; torch {torch.__version__}, threads {THREADS}"
    )
    print(f"clock: CPU time of the calling thread, torch and BLAS on {THREADS} thread")
    print("\n".join(table(published, library, label, args.repeats)))
    if args.rounds > 1:
        ratios = sorted(p.total_cpu / lib.total_cpu for p, lib in rounds)
        print(
            f"total per round, published / library, {args.rounds} rounds: "
            + ", ".join(f"{r:.0f}x" for r in ratios)
            + f"; median {statistics.median(ratios):.0f}x"
        )
    print(
        f"wall-clock totals: published {published.total_wall:.2f} s, library {library.total_wall:.4f} s "
        f"({published.total_wall / library.total_wall:.0f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
