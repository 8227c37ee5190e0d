"""The benchmark suite's glue: a registry of finished benchmarks, the ratios that need
two of them (pure PyTorch / fused, selector / ML-Unc, ours / the published code's stored
figure) written into their ``extra_info`` before pytest-benchmark saves the JSON, and the
short tables printed at the end of ``make bench``.

Never collected by ``make test`` (which runs ``pytest tests``).
"""

from __future__ import annotations

import math

import pytest
import torch
from pipeline_state import BATCH, PUBLISHED_MEDIAMILL_SECONDS, SHAPES

from d2ace_ext import SELECTORS, build_info
from d2ace_ext.selectors.registry import SELECTOR_CLASSES

_REGISTRY: dict = {}


@pytest.fixture
def bench_registry() -> dict:
    """(suite, shape, op or selector) -> the benchmark fixture, filled by each test."""
    return _REGISTRY


def _median(key) -> float | None:
    bench = _REGISTRY.get(key)
    stats = getattr(bench, "stats", None)
    return None if stats is None else stats.stats.median


def _fill_pipeline_ratios() -> None:
    for shape, (n, _, _) in SHAPES.items():
        for fused, python in (("record", "record_py"), ("score", "score_py")):
            t, t_py = _median(("pipeline", shape, fused)), _median(("pipeline", shape, python))
            if t and t_py:
                _REGISTRY[("pipeline", shape, fused)].extra_info["ratio_to_pytorch"] = t_py / t
        score, update = _median(("pipeline", shape, "score")), _median(("pipeline", shape, "update"))
        if score is None:
            continue
        info = _REGISTRY[("pipeline", shape, "score")].extra_info
        info["gb_per_s"] = info["bytes_moved"] / score / 1e9
        if update is not None:
            info["epoch_s"] = math.ceil(n / BATCH) * update + score
            if shape == "mediamill":
                info["published_epoch_s"] = PUBLISHED_MEDIAMILL_SECONDS
                info["ratio_to_published"] = PUBLISHED_MEDIAMILL_SECONDS / info["epoch_s"]


def _fill_selector_ratios() -> None:
    for (suite, shape, name), bench in _REGISTRY.items():
        if suite != "selectors":
            continue
        mine, ml_unc = _median((suite, shape, name)), _median((suite, shape, "ml_unc"))
        if mine and ml_unc:
            bench.extra_info["ratio_to_ml_unc"] = mine / ml_unc


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    # A wrapper outside pytest-benchmark's own, which writes the JSON before yielding.
    _fill_pipeline_ratios()
    _fill_selector_ratios()
    yield


def _fmt(value, scale=1e3, width=9, digits=3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value * scale:>{width}.{digits}f}"


def _pipeline_table(write) -> None:
    shapes = [s for s in SHAPES if any(k[:2] == ("pipeline", s) for k in _REGISTRY)]
    if not shapes:
        return
    write(
        "pipeline: medians in ms; op = the fused record op alone (torch.ops), rows = the rows it reads and "
        "writes, gathered and scattered by plain PyTorch (its memory floor), update = sampler.update; "
        "ratio = pure PyTorch / fused; MB = bytes a scoring must move; epoch = ceil(n/128) updates + one scoring"
    )
    write(
        f"{'shape':<10} {'n':>9} {'q':>5} {'op':>9} {'rows':>9} {'record':>9} {'rec. py':>9} {'ratio':>6} {'update':>9} "
        f"{'score':>9} {'score py':>9} {'ratio':>6} {'MB':>8} {'GB/s':>6} {'epoch':>9}"
    )
    for shape in shapes:
        n, q, _ = SHAPES[shape]
        m = {
            op: _median(("pipeline", shape, op))
            for op in ("op", "rows", "record", "record_py", "update", "score", "score_py")
        }
        info = _REGISTRY[("pipeline", shape, "score")].extra_info if m["score"] else {}
        rec_ratio = _REGISTRY[("pipeline", shape, "record")].extra_info.get("ratio_to_pytorch") if m["record"] else None
        write(
            f"{shape:<10} {n:>9} {q:>5} {_fmt(m['op'])} {_fmt(m['rows'])} {_fmt(m['record'])} {_fmt(m['record_py'])} "
            f"{_fmt(rec_ratio, 1, 6, 1)} "
            f"{_fmt(m['update'])} {_fmt(m['score'], 1e3, 9, 2)} {_fmt(m['score_py'], 1e3, 9, 1)} "
            f"{_fmt(info.get('ratio_to_pytorch'), 1, 6, 1)} {_fmt(info.get('bytes_moved'), 1e-6, 8, 1)} "
            f"{_fmt(info.get('gb_per_s'), 1, 6, 2)} {_fmt(info.get('epoch_s'), 1e3, 9, 1)}"
        )
        if "ratio_to_published" in info:
            write(
                f"  mediamill: {info['epoch_s'] * 1e3:.1f} ms per epoch vs a stored figure for the published code, "
                f"{PUBLISHED_MEDIAMILL_SECONDS:.2f} s (measured once, not in this run): "
                f"{info['ratio_to_published']:.0f}x cheaper; `make bench-published PUBLISHED_SRC=<checkout>` "
                "times both in one run"
            )


def _selector_table(write) -> None:
    cells = sorted({k[1] for k in _REGISTRY if k[0] == "selectors"})
    if not cells:
        return
    names = list(SELECTORS)  # the registry's order: every selector it knows gets a column
    write(
        "selectors: median ms per epoch (record every batch + score once; Balance: loss_mask per batch); "
        "last column ML-Unc / D2ACE"
    )
    write(f"{'n':>6} {'q':>5} " + " ".join(f"{s:>9}" for s in names) + f" {'ML-Unc/D2':>9}")
    for n, q in cells:
        m = {s: _median(("selectors", (n, q), s)) for s in names}
        ratio = m["ml_unc"] / m["d2ace"] if m["ml_unc"] and m["d2ace"] else None
        write(f"{n:>6} {q:>5} " + " ".join(_fmt(m[s], 1e3, 9, 1) for s in names) + f" {_fmt(ratio, 1, 9, 2)}")
    write("scoring alone, median ms:")
    for n, q in cells:
        parts = []
        for s in names:
            bench = _REGISTRY.get(("selectors", (n, q), s))
            scores = SELECTOR_CLASSES[s].uses_records  # Random and Balance read no records, so score nothing
            if bench is not None and "score_ms" in bench.extra_info and scores:
                parts.append(f"{s} {bench.extra_info['score_ms']:.1f}")
        write(f"{n:>6} {q:>5}  " + ", ".join(parts))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _REGISTRY:
        return
    write = terminalreporter.write_line
    info = build_info()
    terminalreporter.section("d2ace_ext benchmark summary")
    write(
        f"torch {info['torch']}, threads {torch.get_num_threads()}, native extension "
        f"{info['extension_loaded']} (CUDA kernels {info['native_cuda_kernels']})"
    )
    _pipeline_table(write)
    _selector_table(write)
