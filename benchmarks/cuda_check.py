"""CUDA checks and kernel timings for the accelerator machine (needs only torch and this
package; benchmarks/gpu_check.sh runs each subcommand as one step).

    python benchmarks/cuda_check.py check     # equivalence, kernel paths, opcheck, launch count
    python benchmarks/cuda_check.py small     # the CUDA ops alone on the kernel paths (for compute-sanitizer)
    python benchmarks/cuda_check.py timing [--json FILE] [--repeats N]
    python benchmarks/cuda_check.py compare BASELINE.json NEW.json

check: (1) the CUDA ops against the CPU ops and the float64 pure-PyTorch pipeline, both
presets, on a random problem recorded through the sampler's path (same batches, same
logits); (2) the kernel-path shapes of tests/support/fused_cuda_shapes.py (wrapping grids, several
columns per thread, q > 2,048, n_t = 1), recorded and scored by the CUDA and the CPU ops;
(3) ``torch.library.opcheck`` of every op on CUDA; (4) the CUDA kernels one epoch's
scoring launches (torch.profiler). Exits non-zero at the first difference.

timing: median kernel times (CUDA events; the ops through torch.ops, without the wrappers' checks) at
the MS-COCO and 1,000,000 x 100 shapes and the kernel-path shapes, with the bytes each op
must move and the bandwidth reached against the card's device-to-device copy. compare
puts two such runs side by side (a baseline checkout's kernels against these, or a build
with other nvcc flags: gpu_check.sh's bench stage).

The package is imported from $D2ACE_CHECK_PACKAGE_ROOT when set (a baseline checkout
built in place), else from this checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("D2ACE_CHECK_PACKAGE_ROOT") or ROOT)
sys.path.append(os.path.join(ROOT, "tests"))  # support.fused_cuda_shapes: the kernel-path shapes

import torch  # noqa: E402

import d2ace_ext  # noqa: E402
from d2ace_ext import D2ACEConfig, D2ACESelector, ops  # noqa: E402
from d2ace_ext.neighbors import random_neighbors  # noqa: E402
from d2ace_ext.scoring import LabelContext, score_epoch  # noqa: E402
from d2ace_ext.sparse_rows import SparseRows, row_pairs  # noqa: E402
from d2ace_ext.visits import VisitState  # noqa: E402

from support.fused_cuda_shapes import KERNEL_PATH_SHAPES, random_batches, random_problem, sparse_rows  # noqa: E402

SCORE_FIELDS = ("label_weights", "correlation", "delta", "phi", "weight_range")


def record_step(state: VisitState, *batch, **flags) -> None:
    """ops.record_step on a VisitState's tensors: batch = (indices, outputs, targets, epoch)."""
    ops.record_step(
        state.window,
        state.pushes,
        state.last_epoch,
        state.loss,
        state.flip_average,
        state.flip_base,
        state.index_errors,
        *batch,
        **flags,
    )


def score_visits(state: VisitState, labels: SparseRows, context: SparseRows, **options):
    """ops.score_visits on a VisitState's tensors and workspace, for the rows of Y and Z."""
    ctx = LabelContext(labels, context, row_pairs(labels, labels), row_pairs(labels, context))
    return ops.score_visits(
        state.window,
        state.pushes,
        state.loss,
        state.flip_average,
        ctx,
        workspace=state.workspace(),
        index_errors=state.index_errors,
        **options,
    )


def sampler_problem(n: int, q: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, q, generator=g) < 3.0 / q).to(torch.float32)
    labels[torch.arange(n), torch.randint(0, q, (n,), generator=g)] = 1.0
    neighbors = random_neighbors(n, 6, g)
    return labels, neighbors, g


def compare(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float) -> float:
    """max |got - want| / max |want| must stay within rtol; exits otherwise."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    finite = torch.isfinite(want)
    if not torch.equal(torch.isfinite(got), finite) or not torch.equal(got[~finite], want[~finite]):
        raise SystemExit(f"cuda_check: {name}: non-finite entries differ")
    if not bool(finite.any()):
        return 0.0
    scale = want[finite].abs().max().clamp(min=1e-12)
    error = ((got - want)[finite].abs().max() / scale).item()
    status = "ok" if error <= rtol else "FAIL"
    print(f"  {name:<44} max rel. error {error:.2e} (limit {rtol:.0e}) {status}")
    if error > rtol:
        raise SystemExit(f"cuda_check: {name} differs")
    return error


def check_equivalence(preset: str) -> None:
    print(f"equivalence through the sampler's path, preset {preset}:")
    n, q = 3000, 40
    labels, neighbors, g = sampler_problem(n, q, 1)
    config = D2ACEConfig.preset(preset).replace(warmup_epochs=1, num_epochs=4)
    on_gpu = D2ACESelector(labels, None, config, neighbors=neighbors, device="cuda")
    on_cpu = D2ACESelector(labels, None, config, neighbors=neighbors, device="cpu")
    for epoch in range(3):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, 128):
            idx = order[start : start + 128]
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
            compare(
                f"{metric}.{field} (GPU vs CPU op)",
                getattr(getattr(gpu, metric), field),
                getattr(getattr(cpu, metric), field),
                1e-5,
            )
            compare(
                f"{metric}.{field} (GPU vs float64)",
                getattr(getattr(gpu, metric), field),
                getattr(getattr(reference, metric), field),
                1e-5,
            )
    compare("mixture P (GPU vs float64)", gpu.probabilities, reference.probabilities, 1e-2)


def copy_state(state: VisitState, device) -> VisitState:
    other = VisitState(state.n, state.q, state.window_size, device)
    for name in VisitState.TENSORS:
        getattr(other, name).copy_(getattr(state, name))
    return other


def check_kernel_paths(presets=("reference",), against_cpu: bool = True) -> None:
    """Each kernel-path shape: batches recorded by the CUDA op, the state scored and its
    weights quantised. ``against_cpu``: the CPU op does the same (states compared, the
    CUDA state scored by both); without it the CUDA ops alone run (the sanitizer runs,
    which look for memory and barrier errors, not for differences)."""
    for name, (n, q, n_t, reaches) in KERNEL_PATH_SHAPES.items():
        for preset in presets:
            print(f"kernel path {name} (n={n:,}, q={q:,}, n_t={n_t}), preset {preset}: {reaches}", flush=True)
            config = D2ACEConfig.preset(preset)  # the state has n_t slots; a config needs >= 2
            flags = dict(
                from_logits=True,
                per_epoch=config.window_unit == "epoch",
                flip_on=config.flip_on,
                flip_threshold=config.flip_threshold,
                lambda2=config.lambda2,
            )
            labels, context = random_problem(n, q, seed=2)
            on_gpu, on_cpu = VisitState(n, q, n_t, "cuda"), VisitState(n, q, n_t)
            for epoch in range(n_t + 1):
                for idx, logits, targets in random_batches(n, q, labels, epoch % 2, epoch, batches=2):
                    record_step(on_gpu, idx.cuda(), logits.cuda(), targets.cuda(), epoch, **flags)
                    if against_cpu:
                        record_step(on_cpu, idx, logits, targets, epoch, **flags)
            options = dict(
                lambda1=config.lambda1,
                loss_transform=config.loss_transform,
                norm_eps=config.norm_eps,
                row_normalize=config.row_normalize_correlation,
                label_weights_in_phi=config.label_weights_in_phi,
            )
            gpu = score_visits(on_gpu, *sparse_rows(labels, context, "cuda"), **options)
            weights = gpu[2] + gpu[3]
            p_gpu = ops.quantized_mixture(weights, 50.0, 0.5, config.quant_index_min, gpu[4])[1]
            torch.cuda.synchronize()
            if not against_cpu:
                print(f"  ran: sum of P = {p_gpu.sum().item():.6f}")
                continue
            for tensor in VisitState.TENSORS:
                compare(f"record_step {tensor}", getattr(on_gpu, tensor), getattr(on_cpu, tensor), 1e-5)
            same = copy_state(on_gpu, "cpu")
            cpu = score_visits(same, *sparse_rows(labels, context, "cpu"), **options)
            for field, got, want in zip(SCORE_FIELDS, gpu, cpu):
                compare(f"score_visits {field}", got, want, 1e-5)
            compare("score_visits metrics workspace", on_gpu.workspace(), same.workspace(), 1e-5)
            p_cpu = ops.quantized_mixture(weights.cpu(), 50.0, 0.5, config.quant_index_min, gpu[4].cpu())[1]
            compare("quantized_mixture (same weights)", p_gpu, p_cpu, 1e-12)


def check_opcheck() -> None:
    print("opcheck on CUDA:")
    n, q = 64, 5
    labels, _, _ = sampler_problem(n, q, 2)
    y = SparseRows.from_dense(labels.cuda())
    state = VisitState(n, q, 3, "cuda")
    state.window.uniform_()
    state.pushes.random_(0, 7)
    args = (
        state.window,
        state.pushes,
        state.loss,
        state.flip_average,
        y.row_ptr,
        y.cols,
        y.row_ptr,
        y.cols,
        state.workspace(),
        0.5,
        False,
        0.0,
        True,
        True,
    )
    torch.library.opcheck(torch.ops.d2ace_ext.score_visits.default, args)
    weights = torch.rand(2, n, dtype=torch.float64, device="cuda")
    low, high = weights.aminmax(dim=1)
    torch.library.opcheck(
        torch.ops.d2ace_ext.quantized_mixture.default, (weights, torch.stack([low, high], 1), 10.0, 0.4, 1)
    )
    idx = torch.randperm(n, device="cuda")[:16]
    torch.library.opcheck(
        torch.ops.d2ace_ext.record_step.default,
        (
            state.window,
            state.pushes,
            state.last_epoch,
            state.loss,
            state.flip_average,
            state.flip_base,
            state.index_errors,
            idx,
            torch.randn(16, q, device="cuda"),
            labels[:16].cuda(),
            1,
            True,
            True,
            False,
            0.5,
            0.7,
        ),
    )
    torch.library.opcheck(torch.ops.d2ace_ext.binary_entropy.default, (torch.rand(100, device="cuda"),))
    print("  all ops pass")


def count_launches() -> None:
    n, q = 5000, 50
    labels, neighbors, _ = sampler_problem(n, q, 3)
    selector = D2ACESelector(labels, None, D2ACEConfig(), neighbors=neighbors, device="cuda")
    selector.score(20)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        selector.score(20)
        torch.cuda.synchronize()
    kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    print(f"scoring one epoch launched {len(kernels)} CUDA kernels/memsets: {sorted(set(kernels))}")


def event_ms(fn, repeats: int) -> float:
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


TIMING_SHAPES = {
    "mscoco": (82_000, 80, 5),
    "1m_x_100": (1_000_000, 100, 5),
    **{name: shape[:3] for name, shape in KERNEL_PATH_SHAPES.items()},
}


def timing(repeats: int) -> dict:
    """Median ms per op and shape; returns the rows with the card and versions."""
    peak = copy_bandwidth()
    rows = []
    for name, (n, q, n_t) in TIMING_SHAPES.items():
        g = torch.Generator(device="cuda").manual_seed(0)
        card = min(3.0, q / 2)
        y_dense = torch.rand(n, q, device="cuda", generator=g) < card / q
        z_dense = y_dense | (torch.rand(n, q, device="cuda", generator=g) < min(1.0, 5 * card / q))
        y, z = SparseRows.from_dense(y_dense), SparseRows.from_dense(z_dense)
        state = VisitState(n, q, n_t, "cuda")
        state.window.uniform_(generator=g)
        state.pushes.random_(3, 12, generator=g)
        state.loss.uniform_(0, 2, generator=g)
        state.flip_average.uniform_(generator=g)
        b = min(128, n)
        idx = torch.randperm(n, device="cuda", generator=g)[:b]
        logits = torch.randn(b, q, device="cuda", generator=g)
        targets = y_dense[idx].float()
        # The ops themselves, through torch.ops (the same schema in a baseline checkout):
        # record_step without the wrapper's host check of the step's values.
        tensors = (
            state.window,
            state.pushes,
            state.last_epoch,
            state.loss,
            state.flip_average,
            state.flip_base,
            state.index_errors,
        )
        rec = lambda: torch.ops.d2ace_ext.record_step(  # noqa: E731
            *tensors,
            idx,
            logits,
            targets,
            1,
            True,
            True,
            False,
            0.5,
            0.7,
        )
        score = lambda: torch.ops.d2ace_ext.score_visits(  # noqa: E731
            state.window,
            state.pushes,
            state.loss,
            state.flip_average,
            y.row_ptr,
            y.cols,
            z.row_ptr,
            z.cols,
            state.workspace(),
            0.5,
            False,
            0.0,
            False,
            False,
        )
        _, _, delta, phi, weight_range = score()
        weights = delta + phi
        mix = lambda: ops.quantized_mixture(weights, 10.0, 0.5, 0, weight_range)  # noqa: E731
        for label, fn, moved in (
            (f"record_step b={b}", rec, b * q * 4 * 7 + b * 16),
            (
                "score_visits",
                score,
                n * q * 4 * (n_t + 2) + n * 8 + (2 * (n + 1) + y.nnz + z.nnz) * 8 + 2 * n * q * 4 * 2,
            ),
            ("quantized_mixture", mix, 2 * n * 8 * 4 + n * 8),
        ):
            ms = event_ms(fn, repeats)
            rows.append(
                {
                    "shape": name,
                    "n": n,
                    "q": q,
                    "n_t": n_t,
                    "op": label,
                    "ms": ms,
                    "mb": moved / 1e6,
                    "gb_per_s": moved / (ms * 1e-3) / 1e9,
                }
            )
        del state, y, z, y_dense, z_dense
        torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "copy_gb_per_s": peak,
        "package": os.path.dirname(os.path.dirname(os.path.abspath(d2ace_ext.__file__))),
        "rows": rows,
    }


def print_timing(result: dict) -> None:
    print(
        f"{result['device']}, torch {result['torch']}, package {result['package']}; "
        f"device-to-device copy {result['copy_gb_per_s']:.0f} GB/s; medians in ms (CUDA events)\n"
    )
    print("| shape | n | q | n_t | op | ms | MB moved | GB/s | % of copy |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(
            f"| {r['shape']} | {r['n']:,} | {r['q']:,} | {r['n_t']} | {r['op']} | {r['ms']:.3f} | {r['mb']:.1f} "
            f"| {r['gb_per_s']:.0f} | {100 * r['gb_per_s'] / result['copy_gb_per_s']:.0f} |"
        )


def print_comparison(baseline: dict, new: dict) -> None:
    print(f"baseline: {baseline['package']} on {baseline['device']}; new: {new['package']} on {new['device']}")
    print("medians in ms (CUDA events); ratio = baseline / new (> 1: new is faster)\n")
    print("| shape | op | baseline ms | new ms | ratio |")
    print("|---|---|---:|---:|---:|")
    old = {(r["shape"], r["op"]): r["ms"] for r in baseline["rows"]}
    for r in new["rows"]:
        before = old.get((r["shape"], r["op"]))
        ratio = f"{before / r['ms']:.2f}" if before else "-"
        shown = "-" if before is None else f"{before:.3f}"
        print(f"| {r['shape']} | {r['op']} | {shown} | {r['ms']:.3f} | {ratio} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="equivalence, kernel paths, opcheck, launch count")
    commands.add_parser("small", help="the CUDA ops alone on the kernel paths (for compute-sanitizer)")
    timed = commands.add_parser("timing", help="median kernel times")
    timed.add_argument("--json", help="also write the results to this file")
    timed.add_argument("--repeats", type=int, default=20)
    compared = commands.add_parser("compare", help="two timing runs side by side")
    compared.add_argument("baseline")
    compared.add_argument("new")
    args = parser.parse_args(argv)
    if args.command == "compare":
        with open(args.baseline) as old, open(args.new) as new:
            print_comparison(json.load(old), json.load(new))
        return 0
    if not torch.cuda.is_available() or not d2ace_ext.build_info()["native_cuda_kernels"]:
        raise SystemExit(f"cuda_check: needs a GPU and the CUDA kernels: {d2ace_ext.build_info()}")
    # The native kernels, whatever D2ACE_EXT_FORCE_FALLBACK says (a baseline checkout from
    # before force_fallback() reads the variable at every call).
    os.environ.pop("D2ACE_EXT_FORCE_FALLBACK", None)
    switch = getattr(d2ace_ext, "force_fallback", None)
    with switch(False) if switch is not None else contextlib.nullcontext():
        return run(args)


def run(args) -> int:
    if args.command == "timing":
        result = timing(args.repeats)
        print_timing(result)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(result, out, indent=1)
        return 0
    if args.command == "small":
        check_kernel_paths(against_cpu=False)
        return 0
    for preset in ("paper", "reference"):
        check_equivalence(preset)
    check_kernel_paths(("paper", "reference"))
    check_opcheck()
    count_launches()
    return 0


if __name__ == "__main__":
    sys.exit(main())
