"""Median cost of D2ACE's per-step recording and per-epoch scoring (pure-PyTorch path).

Prints, per shape, the median over repeats of recording one batch of 128 and of scoring
one epoch, with the bytes the scoring must at least read (state window, loss, flip EMA)
and the bandwidth that implies. The fused kernels of a later issue are measured
against these figures in the same run.

    python benchmarks/bench_pipeline.py [--shapes yeast,mediamill] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from d2ace_ext import D2ACEConfig, D2ACESelector, build_info
from d2ace_ext.datasets.synthetic import make_multilabel

SHAPES = {  # name: (n, q, cardinality)
    "yeast": (1700, 14, 4.24),
    "corel5k": (3600, 374, 3.52),
    "bibtex": (5300, 159, 2.40),
    "mediamill": (31600, 101, 4.38),
    "mscoco": (82000, 80, 2.90),
    "1m_x_100": (1_000_000, 100, 3.0),
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_shape(name: str, repeats: int, batch: int = 128) -> str:
    n, q, card = SHAPES[name]
    features, labels = make_multilabel(n=n, d=16, q=q, cardinality=card, seed=0)
    config = D2ACEConfig(num_neighbors=6)
    if n > 100_000:
        # An exact 16-d K-NN over a million points takes scikit-learn many minutes (a
        # one-off cost outside the per-epoch loop); random neighbours give a Z at least
        # as dense, so the scoring time measured is not flattered.
        neighbors = torch.randint(0, n, (n, config.num_neighbors), generator=torch.Generator().manual_seed(1))
        selector = D2ACESelector(labels, None, config, neighbors=neighbors)
    else:
        selector = D2ACESelector(labels, features, config)
    g = torch.Generator().manual_seed(0)
    for start in range(0, n, 4096):  # one full pass of records so the window is not empty
        idx = torch.arange(start, min(n, start + 4096))
        selector.record(idx, torch.rand(len(idx), q, generator=g), torch.rand(len(idx), q, generator=g), 0)
    probs, losses = torch.rand(batch, q, generator=g), torch.rand(batch, q, generator=g)
    # Batches prepared up front so the timing holds the recording alone.
    batches = torch.randperm(n, generator=g)[: (n // batch) * batch].view(-1, batch)
    step = [0]

    def record():
        selector.record(batches[step[0] % len(batches)], probs, losses, 1)
        step[0] += 1

    def score():
        selector.score(config.warmup_epochs + 1)

    t_record = median_seconds(record, repeats * 20)
    t_score = median_seconds(score, repeats)
    state_bytes = n * q * 4 * (config.window_size + 2) + n * 8
    return (f"{name:<10} {n:>9} {q:>5} {t_record * 1e3:>12.3f} {t_score * 1e3:>12.1f} "
            f"{state_bytes / 1e6:>10.1f} {state_bytes / t_score / 1e9:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="yeast,corel5k,bibtex,mediamill,mscoco")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    info = build_info()
    print(f"torch {info['torch']}, threads {torch.get_num_threads()}, native extension {info['extension_loaded']}")
    print(f"{'shape':<10} {'n':>9} {'q':>5} {'record ms':>12} {'score ms':>12} {'state MB':>10} {'GB/s':>9}")
    for name in args.shapes.split(","):
        print(bench_shape(name.strip(), args.repeats), flush=True)


if __name__ == "__main__":
    main()
