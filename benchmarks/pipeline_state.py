"""Steady-state D2ACE samplers for the per-op benchmarks (``test_pipeline.py``).

A state is built once per shape: n_t epochs of random records first, so every window
is full and the fluctuation term reads all n_t entries (the steady state of a run),
then batches, logits and targets prepared up front so a timed call holds the op alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from d2ace_ext import D2ACEConfig, D2ACESampler
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.neighbors import random_neighbors

#: name: (n, q, label cardinality), the shapes of the MULAN / MS-COCO sets they stand for
SHAPES = {
    "yeast": (1700, 14, 4.24),
    "corel5k": (3600, 374, 3.52),
    "bibtex": (5300, 159, 2.40),
    "mediamill": (31600, 101, 4.38),
    "mscoco": (82000, 80, 2.90),
    "1m_x_100": (1_000_000, 100, 3.0),
}
BATCH = 128

#: The published code's selection cost per epoch at the mediamill shape, measured once on
#: a 2-core machine (../shared/spec/reference-code.md): per-visit bookkeeping in Python
#: loops + end-of-epoch scoring. A stored figure, so ``make bench`` can report a ratio
#: without the published code; ``bench_published.py`` times both sides in one run.
PUBLISHED_MEDIAMILL = {"bookkeeping_s": 25.3, "scoring_s": 0.74}
PUBLISHED_MEDIAMILL_SECONDS = PUBLISHED_MEDIAMILL["bookkeeping_s"] + PUBLISHED_MEDIAMILL["scoring_s"]


@dataclass
class PipelineState:
    """One shape's sampler in steady state, with inputs prepared for timed calls.

    batches: (m, 128) int64 instance indices; logits: (128, q) float32;
    targets: m tensors (128, q) float32, the labels of each batch.
    """

    name: str
    n: int
    q: int
    sampler: D2ACESampler
    batches: torch.Tensor
    logits: torch.Tensor
    targets: list
    step: int = 0

    @property
    def selector(self):
        return self.sampler.selector

    @property
    def epoch(self) -> int:
        return self.selector.config.window_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices (128,), targets (128, q)) cycling over the prepared batches."""
        k = self.step % len(self.targets)
        self.step += 1
        return self.batches[k], self.targets[k]

    def move_rows(self) -> None:
        """The memory traffic of one record, without its arithmetic: the next batch's
        rows gathered and scattered back by plain PyTorch (the window's previous and
        written slots, loss, flip EMA and base, label row), in the op's arrays. What a
        record op cannot beat short of a new state layout. Window slot 0 is copied into
        slot 1, so the state stays a valid one (probabilities) for the later benchmarks."""
        index, _ = self.next_batch()
        visits = self.selector.visits
        n_t = visits.window.size(1)
        flat = visits.window.view(-1, self.q)
        previous = flat.index_select(0, index * n_t)
        flat.index_copy_(0, index * n_t + 1, previous)
        visits.loss.index_copy_(0, index, visits.loss.index_select(0, index))
        average = visits.flip_average.index_select(0, index)
        visits.flip_base.index_copy_(0, index, visits.flip_base.index_select(0, index))
        visits.flip_average.index_copy_(0, index, average)
        self.selector.labels.index_select(0, index)

    def record_bytes(self) -> int:
        """Bytes one record must at least move at b = 128: per row, the window's
        previous slot read and its written slot written, loss written, flip EMA and base
        read and written (q float32 each, so 7 row transfers), the label row (q bytes)
        and the batch's logits and targets (2 q float32)."""
        return BATCH * self.q * (7 * 4 + 1 + 2 * 4)

    def scoring_bytes(self) -> int:
        """Bytes one scoring must at least move: the state (window n·n_t·q, loss and flip
        EMA 2·n·q, float32; pushes n int64), the CSR rows of Y and Z, and U and H
        written once and read once as float32."""
        selector = self.selector
        n, q, n_t = selector.n, selector.q, selector.config.window_size
        y, z = selector.context.labels, selector.context.context
        state = n * q * 4 * (n_t + 2) + n * 8
        csr = (2 * (n + 1) + y.nnz + z.nnz) * 8
        metrics = 2 * n * q * 4 * 2
        return state + csr + metrics


def synthetic_set(n: int, q: int, cardinality: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (n, 16) float32, labels (n, q) float32 0/1) of one benchmark shape, seed 0."""
    return make_multilabel(n=n, d=16, q=q, cardinality=cardinality, seed=0)


def fill_windows(sampler: D2ACESampler, labels: torch.Tensor, generator: torch.Generator) -> None:
    """Record n_t passes of random logits (N(0, 4)) over every instance, so every
    window is full and the fluctuation term reads all n_t entries (the steady state of
    a run), then move the sampler to epoch n_t. labels: (n, q) on the sampler's device."""
    selector = sampler.selector
    n, q, device = selector.n, selector.q, labels.device
    for epoch in range(selector.config.window_size):
        for start in range(0, n, 4096):
            idx = torch.arange(start, min(n, start + 4096), device=device)
            logits = (torch.randn(idx.numel(), q, generator=generator) * 2).to(device)
            selector.record_outputs(idx, logits, labels[idx], "logits", epoch)
    sampler.set_epoch(selector.config.window_size)


def build_state(name: str, device: torch.device | str = "cpu") -> PipelineState:
    """The steady-state sampler for shape ``name`` (a key of :data:`SHAPES`)."""
    n, q, cardinality = SHAPES[name]
    device = torch.device(device)
    features, labels = synthetic_set(n, q, cardinality)
    config = D2ACEConfig(num_neighbors=6)
    if n > 100_000:
        # An exact K-NN over a million points takes scikit-learn many minutes, a one-off
        # cost outside the per-epoch loop; random neighbours give a Z at least as dense,
        # so the scoring time is not flattered.
        neighbors = random_neighbors(n, config.num_neighbors, torch.Generator().manual_seed(1))
        sampler = D2ACESampler(labels, BATCH, config=config, neighbors=neighbors, device=device)
    else:
        sampler = D2ACESampler(labels, BATCH, features, config=config, device=device)
    g = torch.Generator().manual_seed(0)
    on_device = labels.to(device=device, dtype=torch.float32)
    fill_windows(sampler, on_device, g)
    batches = torch.randperm(n, generator=g)[: max(1, n // BATCH) * BATCH].view(-1, BATCH).to(device)
    logits = (torch.randn(BATCH, q, generator=g) * 2).to(device)
    targets = [on_device[b] for b in batches[:64]]
    return PipelineState(name, n, q, sampler, batches, logits, targets)
