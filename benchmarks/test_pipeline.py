"""D2ACE's per-step recording and per-epoch scoring: fused ops against pure PyTorch.

One benchmark per (shape, op), all on the same steady-state sampler of a shape:

- ``op``: the fused record op alone, called through ``torch.ops`` on prepared tensors
  (no Python wrapper): what the kernel costs, value checks included;
- ``rows``: the rows a record reads and writes, moved by plain PyTorch gathers and
  scatters with no arithmetic (``PipelineState.move_rows``): the memory floor the op is
  measured against, since its ~10^4 values are scattered over 128 instances' rows;
- ``record`` / ``record_py``: one batch of 128 logits recorded (probabilities, BCE, flip
  EMA, window) through the selector by the fused op / by the pure-PyTorch path;
- ``update``: the whole ``sampler.update`` call (argument checks included), what a
  training step pays;
- ``score`` / ``score_py``: one epoch's scoring (U, H, v, C, δ, φ, w, both quantised
  distributions and the mixture), fused / pure PyTorch.

``extra_info`` carries the ratio pure PyTorch / fused, and for ``score`` the bytes the
scoring must move, the bandwidth reached, the per-epoch cost (⌈n/128⌉ updates + one
scoring) and, at the mediamill shape, its ratio to the published code's stored figure
(``PUBLISHED_MEDIAMILL``: measured once on a 2-core machine, not in this run; the
published code is not part of this repository: ``bench_published.py`` times it beside
the library in one run).
Run with ``make bench`` (``D2ACE_BENCH_DEVICE=cuda`` times on a GPU).
"""

from __future__ import annotations

import os

import pytest
import torch
from pipeline_state import SHAPES, build_state

from d2ace_ext import force_fallback

DEVICE = torch.device(os.environ.get("D2ACE_BENCH_DEVICE", "cpu"))
OPS = ["op", "rows", "record", "record_py", "update", "score", "score_py"]
CASES = [(shape, op) for shape in SHAPES for op in OPS]
_cache: dict = {}


def state_for(shape: str):
    """One shape's state at a time (the 1,000,000-row state takes ~5 GB)."""
    if shape not in _cache:
        _cache.clear()
        _cache[shape] = build_state(shape, DEVICE)
    return _cache[shape]


def synchronised(fn):
    if DEVICE.type != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize(DEVICE)

    return run


def rounds_for(shape: str, op: str) -> tuple[int, int, int]:
    """(rounds, iterations per round, warm-up rounds), sized so the whole suite stays
    within about ten minutes on two cores: per-call ops take ~0.1-1 ms, a scoring up to
    ~0.6 s fused and ~13 s in pure PyTorch at a million rows."""
    big = SHAPES[shape][0] > 100_000
    if op in ("op", "rows", "record", "record_py", "update"):
        return 25, 40, 1  # 1,000 calls: a median of 25 rounds rides out a busy neighbour
    if op == "score":
        return (3, 1, 1) if big else (7, 1, 1)
    return (1, 1, 0) if big else (3, 1, 1)


@pytest.mark.parametrize("shape,op", CASES, ids=[f"{s}-{o}" for s, o in CASES])
def test_pipeline(benchmark, bench_registry, shape, op):
    state = state_for(shape)
    selector, sampler = state.selector, state.sampler
    epoch = state.epoch

    visits, config = selector.visits, selector.config
    tensors = (
        visits.window,
        visits.pushes,
        visits.last_epoch,
        visits.loss,
        visits.flip_average,
        visits.flip_base,
        visits.index_errors,
    )
    flags = (config.window_unit == "epoch", config.flip_on == "probability", config.flip_threshold, config.lambda2)

    def record_op():
        index, targets = state.next_batch()
        torch.ops.d2ace_ext.record_step.default(
            *tensors, index, state.logits, targets, epoch, True, *flags, selector.labels
        )

    def record():
        index, targets = state.next_batch()
        selector.record_outputs(index, state.logits, targets, "logits", epoch)

    def update():
        index, targets = state.next_batch()
        sampler.update(index, state.logits, targets)

    def score():
        selector.score(selector.config.warmup_epochs + 1)

    fn = {
        "op": record_op,
        "rows": state.move_rows,
        "record": record,
        "record_py": record,
        "update": update,
        "score": score,
        "score_py": score,
    }[op]
    rounds, iterations, warmup = rounds_for(shape, op)
    benchmark.group = f"pipeline {shape}"
    n, q, _ = SHAPES[shape]
    benchmark.extra_info.update({"suite": "pipeline", "shape": shape, "op": op, "n": n, "q": q, "device": str(DEVICE)})
    if op.endswith("_py"):
        with force_fallback():
            benchmark.pedantic(synchronised(fn), rounds=rounds, iterations=iterations, warmup_rounds=warmup)
    else:
        benchmark.pedantic(synchronised(fn), rounds=rounds, iterations=iterations, warmup_rounds=warmup)
    if op == "score":
        benchmark.extra_info["bytes_moved"] = state.scoring_bytes()
    if op in ("op", "rows"):
        benchmark.extra_info["bytes_moved"] = state.record_bytes()
    bench_registry[("pipeline", shape, op)] = benchmark
