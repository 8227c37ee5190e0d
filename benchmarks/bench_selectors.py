"""Per-epoch selection overhead of every selector, side by side.

For each (n, q) and selector: the median over repeats of one epoch's overhead =
recording all ceil(n/128) batches of 128 through ``selector.record_outputs`` (random
logits and the batch's labels: what ``sampler.update`` calls after its argument checks,
so each selector pays for its own per-step path, fused or not) + scoring (``probabilities(epoch)`` for a weighted epoch).
Balance records nothing; its per-step cost, ``loss_mask`` on every batch, is timed in
the recording slot. Random does nothing. Labels come from ``make_multilabel``
(cardinality about 4); Hard-Imb and D2ACE get precomputed random neighbours, since the
one-off K-NN is not part of the per-epoch cost.

The paper's claim (Appendix B): D2ACE's per-epoch cost grows with the nonzeros of Y
(and Z), ML-Unc's with n q².

    python benchmarks/bench_selectors.py [--sizes 5000,31600] [--labels 14,101,374,1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import gc
import math
import statistics
import time

import torch

from d2ace_ext import build_info, make_selector
from d2ace_ext.datasets.synthetic import make_multilabel

NAMES = ["random", "active", "recent", "dihcl", "balance", "hard_imb", "ml_unc", "d2ace"]
BATCH = 128


def build(name: str, labels: torch.Tensor, neighbors: dict):
    warm = dict(num_epochs=100, warmup_epochs=10)
    if name == "random":
        return make_selector(name, labels)
    if name == "balance":
        return make_selector(name, labels)
    if name == "hard_imb":
        return make_selector(name, labels, neighbors=neighbors[5], **warm)
    if name == "d2ace":
        return make_selector(name, labels, neighbors=neighbors[6], **warm)
    return make_selector(name, labels, **warm)


def one_epoch(selector, name, batches, logits, epoch) -> tuple[float, float]:
    started = time.perf_counter()
    if name == "balance":
        for index, targets in batches:
            selector.loss_mask(index, targets)
    elif name != "random":
        for index, targets in batches:
            selector.record_outputs(index, logits[:index.numel()], targets, "logits", epoch)
    recorded = time.perf_counter()
    if name not in ("random", "balance"):
        selector.probabilities(10)
    return recorded - started, time.perf_counter() - recorded


def bench(n: int, q: int, repeats: int, budget: float) -> tuple[int, dict]:
    _, labels = make_multilabel(n=n, d=8, q=q, cardinality=4.0, seed=0)
    g = torch.Generator().manual_seed(0)
    neighbors = {k: torch.randint(0, n, (n, k), generator=g) for k in (5, 6)}
    batches = [(index, labels[index].to(torch.float32)) for index in torch.randperm(n, generator=g).split(BATCH)]
    logits = torch.randn(BATCH, q, generator=g) * 2
    results = {}
    for name in NAMES:
        selector = build(name, labels, neighbors)
        one_epoch(selector, name, batches, logits, 0)  # fill the state once (untimed)
        runs, spent = [], 0.0
        while len(runs) < repeats and (not runs or spent < budget):
            record_s, score_s = one_epoch(selector, name, batches, logits, len(runs) + 1)
            runs.append((record_s, score_s))
            spent += record_s + score_s
        results[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), len(runs))
        del selector
        gc.collect()
    return int((labels != 0).sum()), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,31600")
    parser.add_argument("--labels", default="14,101,374,1000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0,
                        help="stop repeating a cell once its runs took this many seconds (at least one run)")
    args = parser.parse_args()
    info = build_info()
    print(f"torch {info['torch']}, threads {torch.get_num_threads()}, native extension {info['extension_loaded']}")
    print("median ms per epoch: record all ceil(n/128) batches + score once (Balance: loss_mask per batch)")
    header = f"{'n':>6} {'q':>5} {'nnz(Y)':>8} " + " ".join(f"{name:>9}" for name in NAMES) + f" {'MLUnc/D2ACE':>11}"
    print(header)
    scoring = []
    for n in (int(v) for v in args.sizes.split(",")):
        for q in (int(v) for v in args.labels.split(",")):
            nnz, res = bench(n, q, args.repeats, args.budget)
            total = {name: (r[0] + r[1]) * 1e3 for name, r in res.items()}
            cells = " ".join(f"{total[name]:>9.1f}" for name in NAMES)
            print(f"{n:>6} {q:>5} {nnz:>8} {cells} {total['ml_unc'] / total['d2ace']:>11.2f}", flush=True)
            scoring.append((n, q, nnz, res))
    print("\nscoring alone, median ms (recording excluded); runs per cell in brackets")
    print(f"{'n':>6} {'q':>5} " + " ".join(f"{name:>11}" for name in NAMES[1:4] + NAMES[5:]))
    for n, q, nnz, res in scoring:
        cells = " ".join(f"{res[name][1] * 1e3:>7.1f} [{res[name][2]}]" for name in NAMES[1:4] + NAMES[5:])
        print(f"{n:>6} {q:>5} {cells}")


if __name__ == "__main__":
    main()
