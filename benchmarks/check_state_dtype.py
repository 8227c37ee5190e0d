"""What a compact D2ACE state (``state_dtype`` float16 / bfloat16) changes and costs.

    python benchmarks/check_state_dtype.py [--count 2000] [--timing]

Over the seeded random states of the native-vs-PyTorch check (d2ace_ext/equivalence.py:
extreme and infinite logits, exact 0.5 predictions, empty and full label columns, ...)
each state is recorded three times, with float32, float16 and bfloat16 records, scored
at the first selection epoch, and every instance's quantisation index Q (Eq. 13, both
metrics) is compared with float32's: the share that differs and by how many steps.

``--timing``: at the mediamill shape (n = 31,600, q = 101, batch 128) the median
``update`` time per step and one scoring, for each dtype, in this process, one thread.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from d2ace_ext import D2ACEConfig, D2ACESampler, functional  # noqa: E402
from d2ace_ext.equivalence import random_case  # noqa: E402
from d2ace_ext.neighbors import random_neighbors  # noqa: E402
from d2ace_ext.selectors.d2ace import D2ACESelector  # noqa: E402

DTYPES = ("float32", "float16", "bfloat16")


def indices(report, index_min: int) -> list[torch.Tensor | None]:
    """Q (n,) of both metrics; None where the weights are tied (uniform sampling)."""
    return [functional.quantization_index(score.weights, index_min) for score in (report.uncertainty, report.hardness)]


def compare(count: int) -> None:
    compared = 0
    moved = {name: collections.Counter() for name in DTYPES[1:]}
    tied = {name: 0 for name in DTYPES[1:]}  # indices of metrics tied on one path and not the other
    for seed in range(count):
        labels, features, config, steps = random_case(seed)
        found = {}
        for name in DTYPES:
            selector = D2ACESelector(labels, features, config.replace(state_dtype=name))
            for epoch, index, outputs, kind in steps:
                selector.record_outputs(index, outputs, labels[index], kind, epoch)
            found[name] = indices(selector.score(config.warmup_epochs), config.quant_index_min)
        n = labels.shape[0]
        for name in DTYPES[1:]:
            for mine, wide in zip(found[name], found["float32"]):
                if (mine is None) != (wide is None):
                    tied[name] += n
                elif mine is not None:
                    moved[name].update((mine - wide).abs().to(torch.int64).tolist())
        compared += 2 * n
    print(f"{count} random states, {compared} quantisation indices (both metrics) against float32's:")
    for name, counter in moved.items():
        differ = sum(v for k, v in counter.items() if k)
        steps = ", ".join(f"{k}: {v}" for k, v in sorted(counter.items()) if k)
        print(
            f"  {name}: {differ} differ ({100 * differ / compared:.2f} %; by steps {steps or '-'}); and "
            f"{tied[name]} ({100 * tied[name] / compared:.2f} %) in metrics whose weights one path sees tied "
            "(uniform) and the other not, their spread below 16-bit resolution"
        )


def timing() -> None:
    """One warm-up epoch of identical records into a float32, a float16 and a bfloat16
    state at the mediamill shape: update time per step, one scoring, and how far the
    compact states' quantisation indices lie from float32's."""
    torch.set_num_threads(1)
    n, q, b = 31_600, 101, 128
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(n, q, generator=g) < 4.38 / q).float()
    neighbors = random_neighbors(n, 6, g)
    samplers = {
        name: D2ACESampler(
            labels, b, neighbors=neighbors, seed=1, config=D2ACEConfig(num_epochs=3, warmup_epochs=1, state_dtype=name)
        )
        for name in DTYPES
    }
    times = {name: [] for name in DTYPES}
    for sampler in samplers.values():
        sampler.set_epoch(0)
    for batches in zip(*samplers.values()):  # the same shuffled warm-up batches for all three
        index = torch.tensor(batches[0])
        logits = torch.randn(len(index), q, generator=g) * 2
        for name, sampler in samplers.items():
            started = time.perf_counter()
            sampler.update(index, logits, labels[index])
            times[name].append(time.perf_counter() - started)
    print(
        f"mediamill shape n = {n:,}, q = {q}, batch {b}, one warm-up epoch of identical records, 1 thread; "
        f"{torch.__version__}"
    )
    print(
        "| state_dtype | bytes per (instance, label) | update ms per step (median) | scoring s | "
        "Q differing from float32 | median, max |ΔQ| |"
    )
    print("|---|---|---|---|---|---|")
    wide = None
    for name, sampler in samplers.items():
        started = time.perf_counter()
        report = sampler.selector.score(1)
        scoring = time.perf_counter() - started
        found = torch.cat(indices(report, 0))
        wide = found if wide is None else wide
        moved = (found - wide).abs()
        visits = sampler.selector.visits
        per_entry = visits.window.element_size() * (visits.window_size + 3) + 8  # window, loss, 2 flips; U/H
        print(
            f"| {name} | {per_entry} | {1000 * statistics.median(times[name]):.3f} | {scoring:.2f} | "
            f"{100 * float((moved != 0).double().mean()):.1f} % | {float(moved.median()):.0f}, "
            f"{float(moved.max()):.0f} of {n} |"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="random states (seeds 0..count-1)")
    parser.add_argument("--timing", action="store_true", help="time update and scoring per dtype instead")
    args = parser.parse_args(argv)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty label columns warn by design
        timing() if args.timing else compare(args.count)


if __name__ == "__main__":
    main()
