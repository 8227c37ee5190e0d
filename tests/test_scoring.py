"""Properties of the per-epoch scorer: sparse = dense, Lemma 1, the pressure ratio, no NaN."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from d2ace_ext import D2ACEConfig, D2ACESelector
from d2ace_ext import functional as fn
from d2ace_ext.scoring import correlation_phi, score_epoch

from support.problems import random_problem

D = torch.float64


def dense_phi(metric, labels, z, weights, config):
    """Eqs. 9-11 written densely, O(n q²): the independent reference for the sparse path."""
    m = labels * metric
    norms = m.norm(dim=0) + config.norm_eps
    m_bar = torch.where(norms > 0, m / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(m))
    c = m_bar.T @ m_bar
    if config.row_normalize_correlation:
        c = (c / (c.sum(1, keepdim=True) + 1e-8)).T
    r = m * (z @ c)
    if config.label_weights_in_phi:
        r = r * weights
    return r.sum(1)


def fed_selector(config, n=40, q=5, seed=0, visits=3):
    x, y = random_problem(n, q, seed=seed)
    selector = D2ACESelector(y, x, config)
    g = torch.Generator().manual_seed(seed + 1)
    for epoch in range(visits):
        for start in range(0, n, 16):
            idx = torch.arange(start, min(n, start + 16))
            probs = torch.rand(len(idx), q, generator=g)
            losses = torch.rand(len(idx), q, generator=g) * 3
            selector.record(idx, probs, losses, epoch)
    return selector, y


@pytest.mark.parametrize("preset", ["paper", "reference"])
@pytest.mark.parametrize("seed", range(4))
def test_sparse_correlation_equals_dense_formula(preset, seed):
    config = D2ACEConfig.preset(preset)
    selector, y = fed_selector(config, seed=seed)
    unc, hard = selector.visits.metrics(config.lambda1, config.loss_transform)
    z = selector.context.context.to_dense(D)
    for metric in (unc, hard):
        weights = fn.label_weights(metric)
        phi, gram = correlation_phi(metric, weights, selector.context, config)
        assert torch.allclose(phi, dense_phi(metric, y.to(D), z, weights, config), rtol=1e-10, atol=1e-12)
        assert torch.allclose(gram, gram.T)


def test_pair_counts_follow_label_sparsity_not_q_squared():
    x, y = random_problem(200, 50, density=0.04, seed=3)
    selector = D2ACESelector(y, x, D2ACEConfig(num_neighbors=3))
    per_row = y.sum(1)
    z_per_row = selector.context.context.counts().double()
    assert selector.context.label_pairs[0].numel() == int((per_row**2).sum())
    assert selector.context.context_pairs[0].numel() == int((per_row.double() * z_per_row).sum())
    assert selector.context.label_pairs[0].numel() < 200 * 50 * 50 / 50


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_lemma1_probabilities_positive_and_sum_to_one(preset):
    config = D2ACEConfig.preset(preset)
    selector, _ = fed_selector(config, seed=7)
    for epoch in (10, 40, 99):
        report = selector.score(epoch)
        for p in (report.probabilities, report.uncertainty.probabilities, report.hardness.probabilities):
            assert bool((p > 0).all())
            assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)


def test_max_min_ratio_equals_pressure():
    n = 40
    for preset, exponent in (("paper", 1.0), ("reference", (n - 1) / n)):
        config = D2ACEConfig.preset(preset)
        selector, _ = fed_selector(config, n=n, seed=2)
        report = selector.score(config.warmup_epochs + 1)
        for metric in (report.uncertainty, report.hardness):
            p = metric.probabilities
            # Min-max normalisation puts one weight at each end, so Q spans its whole range.
            assert float(p.max() / p.min()) == pytest.approx(report.pressure**exponent, rel=1e-9)


def test_all_equal_weights_fall_back_to_uniform():
    y = torch.ones(6, 2)
    selector = D2ACESelector(y, None, D2ACEConfig(num_neighbors=0))
    selector.record(torch.arange(6), torch.full((6, 2), 0.3), torch.full((6, 2), 0.7), 0)
    report = selector.score(10)
    assert torch.allclose(report.probabilities, torch.full((6,), 1 / 6, dtype=D))


def test_schedule_values_follow_presets():
    paper = D2ACEConfig(num_neighbors=2)
    report_paper = score_epoch(
        torch.rand(5, 2, dtype=D), torch.rand(5, 2, dtype=D), fed_selector(paper, n=5, q=2)[0].context, paper, 10
    )
    assert report_paper.pressure == pytest.approx(100.0) and report_paper.p_beta == pytest.approx(0.7)
    ref = D2ACEConfig.preset("reference", num_neighbors=2)
    report_ref = score_epoch(
        torch.rand(5, 2, dtype=D), torch.rand(5, 2, dtype=D), fed_selector(ref, n=5, q=2)[0].context, ref, 10
    )
    assert report_ref.pressure == pytest.approx(8.0) and report_ref.p_beta == pytest.approx(0.7)


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_edge_cases_never_give_nan(preset):
    config = D2ACEConfig.preset(preset, num_neighbors=1)
    # A column with no positive, a column all positive, saturated predictions, n = 2.
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    with pytest.warns(RuntimeWarning, match="no positive"):
        selector = D2ACESelector(y, x, config)
    fresh = selector.score(config.warmup_epochs)  # nothing recorded: p = 0.5 read everywhere
    assert bool(torch.isfinite(fresh.probabilities).all())
    for epoch in range(3):
        selector.record(
            torch.tensor([0, 1]),
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]),
            torch.tensor([[0.0, 100.0, 0.0], [0.0, 100.0, 0.0]]),
            epoch,
        )
    report = selector.score(config.warmup_epochs + 1)
    for metric in (report.uncertainty, report.hardness):
        for t in (metric.label_weights, metric.correlation, metric.delta, metric.phi, metric.probabilities):
            assert bool(torch.isfinite(t).all())
    assert bool((report.probabilities > 0).all())


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=60),
    pressure=st.floats(1.0, 1e3),
    index_min=st.sampled_from([0, 1]),
)
def test_quantised_probabilities_properties(weights, pressure, index_min):
    w = torch.tensor(weights, dtype=D)
    n = w.numel()
    p = fn.quantized_probabilities(w, pressure, index_min)
    assert bool((p > 0).all()) and float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    ratio = float(p.max() / p.min())
    assert 1.0 - 1e-9 <= ratio <= pressure * (1 + 1e-9)
    index = fn.quantization_index(w, index_min)
    if index is not None:
        assert int(index.min()) >= index_min and int(index.max()) <= n
        # A larger weight never gets a smaller probability (ranks are kept).
        order = torch.argsort(w)
        assert bool((p[order][1:] >= p[order][:-1] * (1 - 1e-12)).all())
