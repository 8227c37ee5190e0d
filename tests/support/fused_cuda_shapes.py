"""The problem shapes that take the CUDA kernels down each of their paths, and a random
problem at such a shape. One home for both tests/test_fused_cuda_paths.py and
benchmarks/cuda_check.py (the sanitizer and timing runs): the small test shapes
(n < 90, q < 13, n_t >= 2) reach none of these paths.

Grid limits on an H100 / H200 (132 multiprocessors): metric_pass runs at most
132 * (1024 // threads) blocks, weight_pass 1,056 blocks of 8 rows (8,448 rows),
quantize_kernel 528 blocks of 256 instances (135,168), before their loops wrap.
"""

from __future__ import annotations

import torch

from d2ace_ext.sparse_rows import SparseRows

# name -> (n, q, n_t, what the shape reaches)
KERNEL_PATH_SHAPES = {
    "narrow": (300, 7, 3, "q <= 256: several rows per block pass, one column per thread"),
    "odd_block": (
        2_000,
        129,
        2,
        "q = 129: a block chosen from q (3 rows, 416 threads) instead of 256 threads, 127 idle",
    ),
    "narrow_wraps": (50_000, 40, 2, "metric_pass's grid-stride loop wraps, 4 rows of 40 per pass (12,500 passes)"),
    "wide_wraps": (
        20_000,
        300,
        3,
        "q > 256: two columns per thread in registers; metric_pass (20,000 passes) "
        "and weight_pass (n > 8,448) both wrap; record_step loops over labels",
    ),
    "atomics_one_slot": (3_000, 2_100, 1, "q > 2,048: nine columns per thread, unshifted global atomics; n_t = 1"),
    "mixture_wraps": (150_000, 3, 1, "quantize_kernel wraps (n > 135,168); n_t = 1; 64 rows of 3 per metric pass"),
}


def random_problem(n: int, q: int, seed: int, cardinality: float = 3.0):
    """labels (n, q) float32 0/1 with about ``cardinality`` positives per row and at least
    one, and a context (n, q) bool about twice as dense (Z ⊇ Y, like the K-NN context)."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, q, generator=g) < min(1.0, cardinality / q)).float()
    labels[torch.arange(n), torch.randint(0, q, (n,), generator=g)] = 1.0
    context = (labels != 0) | (torch.rand(n, q, generator=g) < min(1.0, cardinality / q))
    return labels, context


def random_batches(
    n: int, q: int, labels: torch.Tensor, index_seed: int, logit_seed: int, batches: int, batch: int = 512
):
    """``batches`` (indices (b,), logits (b, q), targets (b, q)) on the CPU: distinct
    indices within each (the same for the same ``index_seed``, so rows can be revisited),
    logits at least 1e-2 from 0 (σ never within rounding of the 0.5 flip threshold, as in
    fused_record_checks.random_batch) and within +-60 (every loss finite)."""
    g_index, g_logit = torch.Generator().manual_seed(index_seed), torch.Generator().manual_seed(logit_seed)
    for _ in range(batches):
        idx = torch.randperm(n, generator=g_index)[: min(batch, n)]
        logits = torch.randn(len(idx), q, generator=g_logit) * 3
        logits = (logits + torch.where(logits >= 0, 1e-2, -1e-2)).clamp(-60, 60)
        yield idx, logits, labels[idx]


def sparse_rows(labels: torch.Tensor, context: torch.Tensor, device) -> tuple[SparseRows, SparseRows]:
    return SparseRows.from_dense(labels.to(device)), SparseRows.from_dense(context.to(device))
