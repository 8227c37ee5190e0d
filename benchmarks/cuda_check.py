"""CUDA checks for the accelerator machine (needs only torch and this package).

1. The CUDA ops against the CPU ops and the float64 pure-PyTorch pipeline, both presets,
   on a random problem recorded through the sampler's path (same batches, same logits).
2. ``torch.library.opcheck`` of every op on CUDA.
3. The number of CUDA kernels one epoch's scoring launches (torch.profiler).
4. Unless ``--small``: median kernel times (CUDA events) for the MS-COCO and 1,000,000 x
   100 shapes, with the bytes each op must move and the achieved bandwidth against the
   card's measured device-to-device copy bandwidth.

    python benchmarks/cuda_check.py [--small]
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch

import d2ace_ext
from d2ace_ext import D2ACEConfig, D2ACESelector, ops
from d2ace_ext.scoring import score_epoch
from d2ace_ext.sparse_rows import SparseRows
from d2ace_ext.visits import VisitState


def random_problem(n: int, q: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, q, generator=g) < 3.0 / q).to(torch.float32)
    labels[torch.arange(n), torch.randint(0, q, (n,), generator=g)] = 1.0
    neighbors = torch.randint(0, n, (n, 6), generator=g)
    return labels, neighbors, g


def compare(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float) -> float:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    scale = want.abs().max().clamp(min=1e-12)
    error = ((got - want).abs().max() / scale).item()
    status = "ok" if error <= rtol else "FAIL"
    print(f"  {name:<34} max rel. error {error:.2e} (limit {rtol:.0e}) {status}")
    if error > rtol:
        raise SystemExit(f"cuda_check: {name} differs")
    return error


def check_equivalence(preset: str) -> None:
    print(f"equivalence, preset {preset}:")
    n, q = 3000, 40
    labels, neighbors, g = random_problem(n, q, 1)
    config = D2ACEConfig.preset(preset).replace(warmup_epochs=1, num_epochs=4)
    on_gpu = D2ACESelector(labels, None, config, neighbors=neighbors, device="cuda")
    on_cpu = D2ACESelector(labels, None, config, neighbors=neighbors, device="cpu")
    for epoch in range(3):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, 128):
            idx = order[start:start + 128]
            logits = torch.randn(len(idx), q, generator=g) * 3
            on_cpu.record_outputs(idx, logits, labels[idx], "logits", epoch)
            on_gpu.record_outputs(idx.cuda(), logits.cuda(), labels[idx].cuda(), "logits", epoch)
    for name in VisitState.TENSORS:
        compare(f"state {name}", getattr(on_gpu.visits, name), getattr(on_cpu.visits, name), 1e-5)
    gpu, cpu = on_gpu.score(3), on_cpu.score(3)
    unc, hard = on_cpu.visits.metrics(config.lambda1, config.loss_transform, torch.float64)
    reference = score_epoch(unc, hard, on_cpu.context, config, 3)
    for metric in ("uncertainty", "hardness"):
        for field in ("label_weights", "correlation", "delta", "phi"):
            compare(f"{metric}.{field} (GPU vs CPU op)", getattr(getattr(gpu, metric), field),
                    getattr(getattr(cpu, metric), field), 1e-5)
            compare(f"{metric}.{field} (GPU vs float64)", getattr(getattr(gpu, metric), field),
                    getattr(getattr(reference, metric), field), 1e-5)
    compare("mixture P (GPU vs float64)", gpu.probabilities, reference.probabilities, 1e-2)


def check_opcheck() -> None:
    print("opcheck on CUDA:")
    n, q = 64, 5
    labels, neighbors, _ = random_problem(n, q, 2)
    y = SparseRows.from_dense(labels.cuda())
    state = VisitState(n, q, 3, "cuda")
    state.window.uniform_()
    state.pushes.random_(0, 7)
    args = (state.window, state.pushes, state.loss, state.flip_average, y.row_ptr, y.cols, y.row_ptr, y.cols,
            state.workspace(), 0.5, False, 0.0, True, True)
    torch.library.opcheck(torch.ops.d2ace_ext.score_visits.default, args)
    weights = torch.rand(2, n, dtype=torch.float64, device="cuda")
    low, high = weights.aminmax(dim=1)
    torch.library.opcheck(torch.ops.d2ace_ext.quantized_mixture.default,
                          (weights, torch.stack([low, high], 1), 10.0, 0.4, 1))
    idx = torch.randperm(n, device="cuda")[:16]
    torch.library.opcheck(torch.ops.d2ace_ext.record_step.default,
                          (state.window, state.pushes, state.last_epoch, state.loss, state.flip_average,
                           state.flip_base, idx, torch.randn(16, q, device="cuda"),
                           labels[:16].cuda(), 1, True, True, False, 0.5, 0.7))
    torch.library.opcheck(torch.ops.d2ace_ext.binary_entropy.default, (torch.rand(100, device="cuda"),))
    print("  all ops pass")


def count_launches() -> None:
    n, q = 5000, 50
    labels, neighbors, _ = random_problem(n, q, 3)
    selector = D2ACESelector(labels, None, D2ACEConfig(), neighbors=neighbors, device="cuda")
    selector.score(20)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        selector.score(20)
        torch.cuda.synchronize()
    kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    names = sorted({k for k in kernels})
    print(f"scoring one epoch launched {len(kernels)} CUDA kernels/memsets: {names}")


def event_ms(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth() -> float:
    x = torch.empty(256 * 1024 * 1024, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    ms = event_ms(lambda: y.copy_(x), 10)
    return 2 * x.numel() * 4 / (ms * 1e-3) / 1e9


def timing_table() -> None:
    peak = copy_bandwidth()
    print(f"device-to-device copy bandwidth: {peak:.0f} GB/s ({torch.cuda.get_device_name()})")
    print(f"{'shape':<10} {'op':<18} {'ms':>8} {'MB moved':>9} {'GB/s':>7} {'% copy':>7}")
    for name, n, q, card in (("mscoco", 82000, 80, 2.9), ("1m_x_100", 1_000_000, 100, 3.0)):
        n_t = 5
        g = torch.Generator(device="cuda").manual_seed(0)
        y_dense = torch.rand(n, q, device="cuda", generator=g) < card / q
        z_dense = torch.rand(n, q, device="cuda", generator=g) < min(1.0, 6 * card / q)
        y, z = SparseRows.from_dense(y_dense), SparseRows.from_dense(z_dense)
        state = VisitState(n, q, n_t, "cuda")
        state.window.uniform_(generator=g)
        state.pushes.random_(3, 12, generator=g)
        state.loss.uniform_(0, 2, generator=g)
        state.flip_average.uniform_(generator=g)
        idx = torch.randperm(n, device="cuda", generator=g)[:128]
        logits = torch.randn(128, q, device="cuda", generator=g)
        targets = y_dense[idx].float()
        rec = lambda: ops.record_step(state, idx, logits, targets, 1, from_logits=True, per_epoch=True,  # noqa: E731
                                      flip_on="prediction", flip_threshold=0.5, lambda2=0.7)
        score = lambda: ops.score_visits(state, y, z, lambda1=0.5, loss_transform="identity",  # noqa: E731
                                         norm_eps=0.0, row_normalize=False, label_weights_in_phi=False)
        _, _, delta, phi, weight_range = score()
        weights = delta + phi
        mix = lambda: ops.quantized_mixture(weights, 10.0, 0.5, 0, weight_range)  # noqa: E731
        rows = (
            ("record_step b=128", rec, 128 * q * 4 * 7 + 128 * 16),
            ("score_visits", score, n * q * 4 * (n_t + 2) + n * 8 + (2 * (n + 1) + y.nnz + z.nnz) * 8 + 2 * n * q * 4 * 2),
            ("quantized_mixture", mix, 2 * n * 8 * 4 + n * 8),
        )
        for label, fn, moved in rows:
            ms = event_ms(fn)
            rate = moved / (ms * 1e-3) / 1e9
            print(f"{name:<10} {label:<18} {ms:>8.3f} {moved / 1e6:>9.1f} {rate:>7.0f} {100 * rate / peak:>6.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="correctness only (for compute-sanitizer)")
    args = parser.parse_args()
    if not torch.cuda.is_available() or not d2ace_ext.build_info()["native_cuda_kernels"]:
        raise SystemExit(f"cuda_check: needs a GPU and the CUDA kernels: {d2ace_ext.build_info()}")
    os.environ.pop("D2ACE_EXT_FORCE_FALLBACK", None)
    for preset in ("paper", "reference"):
        check_equivalence(preset)
    if args.small:
        return
    check_opcheck()
    count_launches()
    timing_table()


if __name__ == "__main__":
    main()
