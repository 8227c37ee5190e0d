"""The two presets differ exactly where docs/fidelity.md says, and every option is wired."""

import dataclasses
import os

import pytest
import torch

from d2ace_ext import PRESETS, D2ACEConfig, D2ACESelector

from support.paths import ROOT
from support.problems import random_problem

EXPECTED_DIFFERENCES = {
    "window_unit": ("epoch", "visit"),
    "flip_on": ("prediction", "probability"),
    "loss_transform": ("identity", "two_minus_exp"),
    "include_self": (False, True),
    "norm_eps": (0.0, 1e-8),
    "row_normalize_correlation": (False, True),
    "label_weights_in_phi": (False, True),
    "quant_index_min": (0, 1),
    "initial_pressure": (100.0, 8.0),
    "pressure_schedule": ("paper", "reference"),
    "t_start": (30, 10),
    "schedule_epoch": ("current", "finished"),
    "warmup_order": ("shuffle", "fixed"),
}


def test_presets_differ_exactly_in_the_documented_fields():
    paper, reference = PRESETS["paper"].to_dict(), PRESETS["reference"].to_dict()
    differing = {k: (paper[k], reference[k]) for k in paper if paper[k] != reference[k]}
    assert differing == EXPECTED_DIFFERENCES
    assert PRESETS["paper"] == D2ACEConfig()


def test_fidelity_table_names_every_option():
    text = open(os.path.join(ROOT, "docs", "fidelity.md"), encoding="utf-8").read()
    for field in dataclasses.fields(D2ACEConfig):
        assert f"`{field.name}`" in text, field.name


def run_scores(config, seed=0, n=30, q=4):
    """Records with repeated visits inside one epoch, then a scoring after warm-up."""
    x, y = random_problem(n, q, seed=seed, density=0.5)
    selector = D2ACESelector(y, x, config)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(4):
        for _ in range(2):  # every instance visited twice per epoch
            idx = torch.randperm(n, generator=g)[:20]
            probs = torch.rand(20, q, generator=g)
            selector.record(idx, probs, torch.rand(20, q, generator=g) * 2, epoch)
    return selector.score(config.warmup_epochs + 5)


SCORING_FIELDS = [k for k in EXPECTED_DIFFERENCES if k != "warmup_order"]


@pytest.mark.parametrize("field", SCORING_FIELDS)
def test_each_reference_option_changes_the_scores(field):
    paper = D2ACEConfig(num_neighbors=3)
    changed = paper.replace(**{field: EXPECTED_DIFFERENCES[field][1]})
    a, b = run_scores(paper), run_scores(changed)
    same_weights = all(
        torch.equal(x.weights, y.weights) for x, y in ((a.uncertainty, b.uncertainty), (a.hardness, b.hardness))
    )
    same_probs = torch.equal(a.probabilities, b.probabilities)
    same_schedule = (a.pressure, a.p_beta) == (b.pressure, b.p_beta)
    assert not (same_weights and same_probs and same_schedule)


def test_unknown_preset_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match="preset"):
        D2ACEConfig.preset("nope")
    with pytest.raises(ValueError, match="window_unit"):
        D2ACEConfig(window_unit="week")
    with pytest.raises(ValueError, match="window_size"):
        D2ACEConfig(window_size=1)
    with pytest.raises(ValueError, match="lambda2"):
        D2ACEConfig(lambda2=0.0)


def test_scaled_schedule():
    short = D2ACEConfig().scaled_to(30)
    assert (short.num_epochs, short.warmup_epochs, short.t_start, short.t_end) == (30, 3, 9, 21)
