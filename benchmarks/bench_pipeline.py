"""D2ACE's per-step recording and per-epoch scoring: fused ops against pure PyTorch.

For each shape, median over repeats (same process, same state, side by side):
- record: one batch of 128 logits recorded (probabilities, BCE, flip EMA, window), via
  the fused op and via the pure-PyTorch path, and the ratio;
- update: the whole ``SelectionBatchSampler.update`` call with the fused op (argument
  checks included), what a training step pays;
- score: one epoch's scoring (U, H, v, C, δ, φ, w, both quantised distributions and the
  mixture), fused and pure PyTorch, and the ratio;
- the bytes the scoring must at least move (the state: window n·n_t·q, loss and flip EMA
  n·q in float32, pushes, and the CSR rows of Y and Z; plus U and H written once and read
  once as float32) and the bandwidth that gives.
For the mediamill shape it also prints the per-epoch cost (⌈n/128⌉ recorded batches +
one scoring) against the published code's 25.3 s of bookkeeping + 0.74 s of scoring
per epoch (``../shared/spec/reference-code.md``).

    python benchmarks/bench_pipeline.py [--shapes yeast,mediamill] [--repeats 5] [--device cpu]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from d2ace_ext import D2ACEConfig, D2ACESampler, build_info
from d2ace_ext.datasets.synthetic import make_multilabel

SHAPES = {  # name: (n, q, cardinality)
    "yeast": (1700, 14, 4.24),
    "corel5k": (3600, 374, 3.52),
    "bibtex": (5300, 159, 2.40),
    "mediamill": (31600, 101, 4.38),
    "mscoco": (82000, 80, 2.90),
    "1m_x_100": (1_000_000, 100, 3.0),
}
PUBLISHED_MEDIAMILL_SECONDS = 25.3 + 0.74  # per epoch: bookkeeping + scoring
BATCH = 128


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class forced_fallback:
    """Runs its block on the pure-PyTorch path (the switch is read at call time)."""

    def __enter__(self):
        self.saved = os.environ.get("D2ACE_EXT_FORCE_FALLBACK")
        os.environ["D2ACE_EXT_FORCE_FALLBACK"] = "1"

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("D2ACE_EXT_FORCE_FALLBACK", None)
        else:
            os.environ["D2ACE_EXT_FORCE_FALLBACK"] = self.saved


def scoring_bytes(selector) -> int:
    n, q, n_t = selector.n, selector.q, selector.config.window_size
    y, z = selector.context.labels, selector.context.context
    state = n * q * 4 * (n_t + 2) + n * 8
    csr = (2 * (n + 1) + y.nnz + z.nnz) * 8
    metrics = 2 * n * q * 4 * 2
    return state + csr + metrics


def bench_shape(name: str, repeats: int, device: torch.device, fallback: bool) -> tuple[str, float | None]:
    n, q, card = SHAPES[name]
    features, labels = make_multilabel(n=n, d=16, q=q, cardinality=card, seed=0)
    config = D2ACEConfig(num_neighbors=6)
    if n > 100_000:
        # An exact 16-d K-NN over a million points takes scikit-learn many minutes (a
        # one-off cost outside the per-epoch loop); random neighbours give a Z at least
        # as dense, so the scoring time measured is not flattered.
        neighbors = torch.randint(0, n, (n, config.num_neighbors), generator=torch.Generator().manual_seed(1))
        sampler = D2ACESampler(labels, BATCH, config=config, neighbors=neighbors, device=device)
    else:
        sampler = D2ACESampler(labels, BATCH, features, config=config, device=device)
    selector = sampler.selector
    g = torch.Generator().manual_seed(0)
    labels_dev = labels.to(device=device, dtype=torch.float32)
    # n_t epochs of records first, so every window is full: the steady state of a run,
    # where the fluctuation term reads all n_t entries.
    for epoch in range(config.window_size):
        for start in range(0, n, 4096):
            idx = torch.arange(start, min(n, start + 4096))
            logits = (torch.randn(len(idx), q, generator=g) * 2).to(device)
            selector.record_outputs(idx.to(device), logits, labels_dev[idx.to(device)], "logits", epoch)
    sampler.set_epoch(config.window_size)
    # Batches prepared up front so the timing holds the recording alone.
    batches = torch.randperm(n, generator=g)[: max(1, n // BATCH) * BATCH].view(-1, BATCH).to(device)
    logits = (torch.randn(BATCH, q, generator=g) * 2).to(device)
    targets = [labels_dev[b] for b in batches[:64]]
    step = [0]

    def record():
        k = step[0] % len(targets)
        selector.record_outputs(batches[k], logits, targets[k], "logits", config.window_size)
        step[0] += 1

    def update():
        k = step[0] % len(targets)
        sampler.update(batches[k], logits, targets[k])
        step[0] += 1

    def score():
        selector.score(config.warmup_epochs + 1)

    t_record = median_seconds(record, repeats * 40, device)
    t_update = median_seconds(update, repeats * 40, device)
    t_score = median_seconds(score, repeats, device)
    if fallback:
        with forced_fallback():
            f_record = median_seconds(record, repeats * 40, device)
            f_score = median_seconds(score, max(1, repeats // 2), device)
    else:
        f_record = f_score = float("nan")
    moved = scoring_bytes(selector)
    epoch_seconds = math.ceil(n / BATCH) * t_update + t_score
    line = (f"{name:<10} {n:>9} {q:>5} {t_record * 1e3:>9.3f} {f_record * 1e3:>9.3f} {f_record / t_record:>6.1f}x "
            f"{t_update * 1e3:>9.3f} {t_score * 1e3:>10.2f} {f_score * 1e3:>10.1f} {f_score / t_score:>6.1f}x "
            f"{moved / 1e6:>9.1f} {moved / t_score / 1e9:>7.2f} {epoch_seconds * 1e3:>10.1f}")
    return line, epoch_seconds if name == "mediamill" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="yeast,corel5k,bibtex,mediamill,mscoco,1m_x_100")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-fallback", action="store_true", help="skip the pure-PyTorch timings")
    args = parser.parse_args()
    device = torch.device(args.device)
    info = build_info()
    print(f"torch {info['torch']}, threads {torch.get_num_threads()}, device {device}, "
          f"native extension {info['extension_loaded']} (CUDA kernels {info['native_cuda_kernels']})")
    print("times are medians in ms; 'x' = pure PyTorch / fused, measured in this run; "
          "MB = bytes the scoring must move; epoch = ceil(n/128) updates + one scoring")
    print(f"{'shape':<10} {'n':>9} {'q':>5} {'record':>9} {'rec. py':>9} {'ratio':>7} {'update':>9} "
          f"{'score':>10} {'score py':>10} {'ratio':>7} {'MB':>9} {'GB/s':>7} {'epoch':>10}")
    for name in args.shapes.split(","):
        line, epoch_seconds = bench_shape(name.strip(), args.repeats, device, not args.no_fallback)
        print(line, flush=True)
        if epoch_seconds is not None:
            print(f"  mediamill: {epoch_seconds * 1e3:.1f} ms per epoch vs the published code's "
                  f"{PUBLISHED_MEDIAMILL_SECONDS:.2f} s: {PUBLISHED_MEDIAMILL_SECONDS / epoch_seconds:.0f}x cheaper")


if __name__ == "__main__":
    main()
