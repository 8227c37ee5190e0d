"""The fused quantized_mixture operator against functional.quantized_probabilities and
functional.mixture: the same float64 weights must give the same indices, so P equal to
rounding."""

from __future__ import annotations

import math

import pytest
import torch

import d2ace_ext
from d2ace_ext import ops

from support.fused_checks import devices
from support.fused_score_checks import fallback_mixture

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")


def assert_mixture_exact(weights, pressure, p_beta, index_min, range_given=True):
    """Same float64 weights: the same quantisation indices, so P equal to rounding only.

    One index step changes P by s^(1/n) - 1 >= 1e-5 in these tests, far above the
    1e-12 allowed, so the check pins every index."""
    n = weights.shape[1]
    assert pressure == 1.0 or pressure ** (1.0 / n) - 1.0 > 1e-6
    weight_range = torch.stack(list(weights.aminmax(dim=1)), dim=1) if range_given else None
    p, mixed = ops.quantized_mixture(weights, pressure, p_beta, index_min, weight_range)
    expected_p, expected_mixed = fallback_mixture(weights.cpu(), pressure, p_beta, index_min)
    assert p.dtype == torch.float64 and p.shape == (2, n) and mixed.shape == (n,)
    torch.testing.assert_close(p.cpu(), expected_p, rtol=1e-12, atol=0)
    torch.testing.assert_close(mixed.cpu(), expected_mixed, rtol=1e-12, atol=0)
    torch.testing.assert_close(p.sum(1).cpu(), torch.ones(2, dtype=torch.float64), rtol=1e-12, atol=0)
    return p, mixed


@pytest.mark.parametrize("device", devices("quantized_mixture"))
@pytest.mark.parametrize("index_min", [0, 1])
@pytest.mark.parametrize("pressure", [1.0, 1.5, 8.0, 100.0])
@pytest.mark.parametrize("seed", range(3))
def test_quantized_mixture_matches_fallback_on_random_weights(device, index_min, pressure, seed):
    g = torch.Generator().manual_seed(seed)
    n = [1, 7, 50][seed] if pressure == 1.0 else [7, 50, 1000][seed]
    weights = (torch.randn(2, n, generator=g, dtype=torch.float64) * 10**seed).to(device)
    p_beta = [0.0, 0.3, 1.0][seed]
    p, mixed = assert_mixture_exact(weights, pressure, p_beta, index_min, range_given=seed != 1)
    if pressure == 1.0 or n == 1:
        assert torch.equal(p.cpu(), torch.full((2, n), 1.0 / n, dtype=torch.float64))
    else:
        # The largest weight holds the largest P, the smallest the smallest: ratio s^((n - Q_top)/n).
        for m in range(2):
            hi, lo = p[m, weights[m].argmax()], p[m, weights[m].argmin()]
            assert math.isclose(hi / lo, pressure ** ((n - index_min) / n), rel_tol=1e-12)


@pytest.mark.parametrize("device", devices("quantized_mixture"))
@pytest.mark.parametrize("n", [4, 8, 10, 37, 64])
@pytest.mark.parametrize("index_min", [0, 1])
def test_quantized_mixture_weights_exactly_on_boundaries(device, n, index_min):
    # w = low + (k/n) span puts (1 - w̃) n at, or within rounding of, the integer n - k:
    # exactly for powers of two, off by an ulp either way otherwise. The kernel repeats
    # the fallback's arithmetic operation for operation, so it rounds the same way and
    # must give the same index for every weight.
    for low, span in [(0.0, 1.0), (0.1, 3.0), (-2.5, 0.7), (1e3, 1e-3)]:
        k = torch.arange(n + 1, dtype=torch.float64)
        row = low + k / n * span
        other = (low - 1.0) + torch.arange(n + 1, dtype=torch.float64).flip(0) * (span / n)
        weights = torch.stack([row, other]).to(device)
        assert_mixture_exact(weights, 7.0, 0.4, index_min)


@pytest.mark.parametrize("device", devices("quantized_mixture"))
@pytest.mark.parametrize("index_min", [0, 1])
def test_quantized_mixture_uniform_cases(device, index_min):
    n = 9
    ones = torch.full((n,), 2.5, dtype=torch.float64)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    with_inf = ramp.clone()
    with_inf[3] = math.inf
    uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for rows, uniform_rows in [
        ((ones, ramp), [0]),
        ((ramp, ones), [1]),
        ((ones, ones), [0, 1]),
        ((with_inf, ramp), [0]),
    ]:
        weights = torch.stack(rows).to(device)
        p, mixed = assert_mixture_exact(weights, 50.0, 0.25, index_min)
        for m in uniform_rows:
            assert torch.equal(p[m].cpu(), uniform)  # all equal (or an infinite range): uniform
    p, mixed = ops.quantized_mixture(torch.stack([ramp, ramp]).to(device), 1.0, 0.6, index_min)
    assert torch.equal(p.cpu(), torch.stack([uniform, uniform]))  # s = 1: uniform whatever w
    torch.testing.assert_close(mixed.cpu(), uniform, rtol=1e-15, atol=0)
