"""CPU time of selection per epoch, measured with ``time.thread_time``.

    python benchmarks/selection_cpu_time.py [--shapes demo,mediamill,mscoco] [--epochs 8]

Wall-clock medians on a shared machine swing with the load (a busy core preempts the
process, and a parallel region waits a whole scheduler slice for its second thread);
the CPU time of the calling thread, with torch on one thread, counts only the work the
sampler does: ``next(batches)`` (drawing, and scoring at the epoch's first batch) and
``update`` (checks, target check, recording). No model is trained: the logits are
random, so this is the selection cost alone, to set against an epoch of training
measured by ``bench_overhead.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from d2ace_ext.factory import make_sampler

# name: (n, q, batch size); K-NN replaced by random neighbours (a one-off cost, not per epoch)
SHAPES = {"demo": (1920, 14, 128), "yeast": (2417, 14, 128), "mediamill": (31600, 101, 128), "mscoco": (82000, 80, 128)}
SELECTORS = ("random", "ml_unc", "d2ace")


def selection_times(name: str, labels: torch.Tensor, batch: int, epochs: int) -> tuple[float, float]:
    """(median CPU ms per epoch from the third epoch on, median CPU µs per update call)."""
    n, q = labels.shape
    options = {} if name == "random" else {"num_epochs": 100, "warmup_epochs": 1}
    if name == "d2ace":
        g = torch.Generator().manual_seed(1)
        options["neighbors"] = torch.randint(0, n, (n, 6), generator=g)
    sampler = make_sampler(name, labels, batch, seed=0, **options)
    g = torch.Generator().manual_seed(2)
    per_epoch, per_update = [], []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        spent, batches = 0.0, iter(sampler)
        while True:
            started = time.thread_time()
            try:
                chosen = next(batches)
            except StopIteration:
                spent += time.thread_time() - started
                break
            spent += time.thread_time() - started
            index = torch.tensor(chosen)
            logits = torch.randn(len(chosen), q, generator=g) * 3
            targets = labels[index]
            started = time.thread_time()
            sampler.update(index, logits, targets)
            took = time.thread_time() - started
            spent += took
            per_update.append(took)
        if epoch >= 2:  # past the warm-up epoch and the first scoring's one-off allocations
            per_epoch.append(spent)
    return statistics.median(per_epoch) * 1e3, statistics.median(per_update) * 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="demo,mediamill,mscoco", help=f"comma-separated, of {sorted(SHAPES)}")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread; CPU time of the calling thread (time.thread_time)")
    print("| shape | n | q | batches | selector | selection CPU ms / epoch | update CPU µs / call |")
    print("|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        n, q, batch = SHAPES[shape]
        g = torch.Generator().manual_seed(0)
        labels = (torch.rand(n, q, generator=g) < 0.3).float()
        for name in SELECTORS:
            epoch_ms, update_us = selection_times(name, labels, batch, args.epochs)
            print(f"| {shape} | {n} | {q} | {-(-n // batch)} | {name} | {epoch_ms:.2f} | {update_us:.1f} |", flush=True)


if __name__ == "__main__":
    main()
