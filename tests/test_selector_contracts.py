"""Every baseline selector's contract: the quantised distribution's properties, uniform
before anything is recorded, clear errors on bad options, labels and state dicts."""

import pytest
import torch

from d2ace_ext import functional
from d2ace_ext.selectors import (
    SHUFFLE,
    WEIGHTED,
    ActiveSelector,
    BalanceSelector,
    DIHCLSelector,
    HardImbSelector,
    MLUncSelector,
    RecentSelector,
)
from d2ace_ext.selectors._common import QuantizedConfig

F64 = dict(dtype=torch.float64)


# -- distribution properties of every quantiser-based selector ---------------------------------
def _driven(name, n=60, q=5, epochs=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, q, generator=g) < 0.3).float()
    y[0] = 1.0
    options = dict(num_epochs=10, warmup_epochs=2)
    if name == "active":
        sel = ActiveSelector(y, **options)
    elif name == "recent":
        sel = RecentSelector(y, **options)
    elif name == "recent_rank":
        sel = RecentSelector(y, quantizer="rank", **options)
    elif name == "hard_imb":
        sel = HardImbSelector(y, torch.rand(n, 3, generator=g), **options)
    else:
        sel = MLUncSelector(y, **options)
    for epoch in range(epochs):
        logits = torch.randn(n, q, generator=g) * 2
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        sel.record(torch.arange(n), torch.sigmoid(logits), losses, epoch)
    return sel


@pytest.mark.parametrize("name", ["active", "recent", "recent_rank", "hard_imb", "ml_unc"])
def test_quantized_distribution_properties(name):
    sel = _driven(name)
    assert sel.batch_mode(1) == SHUFFLE and sel.batch_mode(2) == WEIGHTED
    w = sel.weights()
    p = sel.probabilities(2)
    assert p.dtype == torch.float64 and p.shape == (60,)
    assert bool((p > 0).all()) and float(p.sum()) == pytest.approx(1.0)
    order = torch.argsort(w)
    assert bool((p[order].diff() >= -1e-15).all())  # never less probable for a larger weight
    assert float(p.max() / p.min()) <= 100.0 * (1 + 1e-9)
    assert float(p.max() / p.min()) > 10.0  # the pressure is really applied
    last = sel.probabilities(9)
    assert torch.allclose(last, torch.full_like(last, 1 / 60))  # s = 1 at the last epoch


def test_index_quantiser_pressure_ratio_is_s():
    sel = _driven("active")
    p = sel.probabilities(2)
    assert float(p.max() / p.min()) == pytest.approx(100.0)
    torch.testing.assert_close(p, functional.quantized_probabilities(sel.weights(), 100.0))


@pytest.mark.parametrize("cls", [ActiveSelector, RecentSelector, MLUncSelector])
def test_uniform_when_nothing_recorded(cls):
    p = cls(torch.zeros(9, 2), warmup_epochs=0).probabilities(0)
    assert torch.allclose(p, torch.full((9,), 1 / 9, **F64))


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,options,match",
    [
        (ActiveSelector, dict(unseen_variance=0.3), "unseen_variance"),
        (ActiveSelector, dict(num_epochs=0), "num_epochs"),
        (ActiveSelector, dict(initial_pressure=0.5), "initial_pressure"),
        (ActiveSelector, dict(pressure_schedule="down"), "pressure_schedule"),
        (RecentSelector, dict(window_size=0), "window_size"),
        (RecentSelector, dict(threshold=1.0), "threshold"),
        (RecentSelector, dict(quantizer="value"), "quantizer"),
        (DIHCLSelector, dict(gamma=1.0), "gamma"),
        (DIHCLSelector, dict(feedback="loss"), "feedback"),
        (DIHCLSelector, dict(temperature_decay=0.0), "temperature_decay"),
        (DIHCLSelector, dict(warmup_epochs=-1), "warmup_epochs"),
        (DIHCLSelector, dict(draw="episode"), "draw"),
        (DIHCLSelector, dict(subset_decay=1.0), "subset_decay"),
        (DIHCLSelector, dict(subset_min=0.0), "subset_min"),
        (BalanceSelector, dict(max_weight=0.5), "max_weight"),
        (MLUncSelector, dict(window_size=1), "window_size"),
        (MLUncSelector, dict(lambda1=float("nan")), "lambda1"),
        (MLUncSelector, dict(correlation="pearson"), "correlation"),
    ],
)
def test_bad_options(cls, options, match):
    with pytest.raises(ValueError, match=match):
        cls(torch.zeros(4, 2), **options)


def test_unknown_option_and_config_conflict():
    with pytest.raises(TypeError, match="no option"):
        ActiveSelector(torch.zeros(4, 2), window=3)
    from d2ace_ext.selectors import ActiveConfig

    with pytest.raises(ValueError, match="either config"):
        ActiveSelector(torch.zeros(4, 2), ActiveConfig(), num_epochs=3)
    with pytest.raises(TypeError, match="ActiveConfig"):
        ActiveSelector(torch.zeros(4, 2), QuantizedConfig())


@pytest.mark.parametrize("cls", [ActiveSelector, RecentSelector, DIHCLSelector, BalanceSelector, MLUncSelector])
def test_bad_labels(cls):
    with pytest.raises(ValueError, match="at least 2 instances"):
        cls(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="0/1"):
        cls(torch.full((4, 2), 0.5))
    with pytest.raises(TypeError, match="labels"):
        cls([[0, 1], [1, 0]])


@pytest.mark.parametrize("name", ["active", "recent", "hard_imb", "ml_unc"])
def test_load_state_dict_checks_before_changing(name):
    sel = _driven(name)
    before = {key: value.clone() for key, value in sel.state_dict().items() if isinstance(value, torch.Tensor)}
    bad = sel.state_dict()
    key = next(iter(before))
    bad[key] = bad[key][:-1]
    with pytest.raises(ValueError, match=key):
        sel.load_state_dict(bad)
    other = sel.state_dict()
    other["config"] = dict(other["config"], num_epochs=11)
    with pytest.raises(ValueError, match="config"):
        sel.load_state_dict(other)
    missing = sel.state_dict()
    del missing[key]
    with pytest.raises(KeyError, match=key):
        sel.load_state_dict(missing)
    for k, value in sel.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[k])
