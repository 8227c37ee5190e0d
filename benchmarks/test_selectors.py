"""Per-epoch selection overhead of every selector, one benchmark per (selector, n, q).

One round is one epoch: all ⌈n/128⌉ batches of 128 recorded through
``selector.record_outputs`` (random logits and the batch's labels, what
``sampler.update`` calls after its argument checks, so each selector pays for its own
per-step path, fused or not), then one scoring (``probabilities`` of a weighted epoch).
Balance records nothing: its per-step ``loss_mask`` is timed in the recording slot;
Random does nothing; InfoBatch's scoring is its pruning draw (``pruned_weights``), and
it records a full pass here although its pruned epochs record only the kept instances. Labels from ``make_multilabel`` (cardinality about 4); Hard-Imb
and D2ACE get precomputed random neighbours (the one-off K-NN is not a per-epoch cost).
``extra_info`` holds the recording and scoring medians apart and the ratio to ML-Unc at
the same shape. The paper's claim (Appendix B): D2ACE's per-epoch cost grows with the
nonzeros of Y (and Z), ML-Unc's with n q². ``make bench-selectors`` runs these alone.
"""

from __future__ import annotations

import gc
import statistics
import time

import pytest
import torch

from d2ace_ext import SELECTORS, make_selector
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.neighbors import random_neighbors
from d2ace_ext.selectors import PRUNED, WEIGHTED
from d2ace_ext.selectors.registry import SELECTOR_CLASSES, default_config

NAMES = list(SELECTORS)
#: the K of each selector with a K-NN (its default num_neighbors: Hard-Imb 5, D2ACE 6)
NEIGHBORS = {name: default_config(name).num_neighbors for name in NAMES if SELECTOR_CLASSES[name].uses_neighbors}
SIZES = [5000, 31600]
LABELS = [14, 101, 374, 1000]
BATCH = 128
#: stop adding rounds to a cell once one epoch takes this long (ML-Unc at q = 1,000)
ROUND_BUDGET_S = 20.0
CASES = [(n, q, name) for n in SIZES for q in LABELS for name in NAMES]
_problem: dict = {}


def problem(n: int, q: int) -> dict:
    """Labels, neighbours and batches for (n, q), built once and kept for its cells."""
    if (n, q) not in _problem:
        _problem.clear()
        gc.collect()
        _, labels = make_multilabel(n=n, d=8, q=q, cardinality=4.0, seed=0)
        g = torch.Generator().manual_seed(0)
        neighbors = {k: random_neighbors(n, k, g) for k in sorted(set(NEIGHBORS.values()))}
        batches = [(i, labels[i].to(torch.float32)) for i in torch.randperm(n, generator=g).split(BATCH)]
        _problem[(n, q)] = {
            "labels": labels,
            "neighbors": neighbors,
            "batches": batches,
            "logits": torch.randn(BATCH, q, generator=g) * 2,
            "nnz": int((labels != 0).sum()),
        }
    return _problem[(n, q)]


def build(name: str, data: dict):
    """The selector with its default options (100 epochs, warm-up 10), a K-NN selector
    on the precomputed random neighbours."""
    if name in NEIGHBORS:
        return make_selector(name, data["labels"], neighbors=data["neighbors"][NEIGHBORS[name]])
    return make_selector(name, data["labels"])


def one_epoch(selector, name: str, data: dict, epoch: int, split: list) -> None:
    """Records every batch then scores once for epoch 10 (its first selection epoch);
    appends (record_s, score_s) to ``split``."""
    started = time.perf_counter()
    if name == "balance":  # its per-step loss masks take the recording slot
        for index, targets in data["batches"]:
            selector.loss_mask(index, targets)
    elif selector.uses_records:
        for index, targets in data["batches"]:
            selector.record_outputs(index, data["logits"][: index.numel()], targets, "logits", epoch)
    recorded = time.perf_counter()
    mode = selector.batch_mode(10)
    if mode == PRUNED:
        selector.pruned_weights(10)
    elif mode == WEIGHTED:
        selector.probabilities(10)
    split.append((recorded - started, time.perf_counter() - recorded))


@pytest.mark.parametrize("n,q,name", CASES, ids=[f"n{n}-q{q}-{s}" for n, q, s in CASES])
def test_selector_epoch(benchmark, bench_registry, n, q, name):
    data = problem(n, q)
    selector = build(name, data)
    split: list = []
    one_epoch(selector, name, data, 0, split)  # fills the state once, untimed
    first = sum(split.pop())
    rounds = max(1, min(3, int(ROUND_BUDGET_S // max(first, 1e-9))))
    epochs = iter(range(1, rounds + 1))

    def setup():
        return (selector, name, data, next(epochs), split), {}

    benchmark.group = f"selectors n={n} q={q}"
    benchmark.pedantic(one_epoch, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        {
            "suite": "selectors",
            "selector": name,
            "n": n,
            "q": q,
            "nnz_y": data["nnz"],
            "record_ms": statistics.median(r for r, _ in split) * 1e3,
            "score_ms": statistics.median(s for _, s in split) * 1e3,
        }
    )
    bench_registry[("selectors", (n, q), name)] = benchmark
