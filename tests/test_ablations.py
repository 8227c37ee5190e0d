"""The paper's ablations (Figure 5, B-I) as named variants: each changes exactly the
component it names. Every test scores a full and an ablated sampler from the same
recorded warm-up epochs and compares their reports part by part."""

import contextlib
import json
import os

import pytest
import torch

import d2ace_ext
from d2ace_ext import D2ACEConfig, D2ACESampler, cli, ops
from d2ace_ext.cli_options import options_per_name
from d2ace_ext.config import ABLATIONS
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.harness import ablation_report
from d2ace_ext.harness.ablation_report import ablation_records, with_ablation
from d2ace_ext.harness.experiment import Protocol, RunKey, canonical_selector
from d2ace_ext.harness.fold_data import PreparedDataset
from d2ace_ext.harness.fold_run import build_sampler
from d2ace_ext.harness.tables import summarise
from d2ace_ext.selectors.registry import make_selector

from support.problems import drive, random_problem

#: An epoch where the full method's p_β (0.6 under either preset) is none of the fixed values.
SCORED_EPOCH = {"paper": 39, "reference": 26}
PARTS = ("label_weights", "delta", "phi", "correlation", "probabilities")


def scored(config, epoch, n=60, q=5):
    """The ScoreReport of ``epoch`` after four recorded warm-up epochs (the same batches and
    logits for every config with 10 warm-up epochs), and the U, H those records give."""
    x, y = random_problem(n, q, seed=1, density=0.4)
    sampler = D2ACESampler(y, 16, x, config=config, seed=4)
    drive(sampler, y, epochs=4, seed=2)
    sampler.set_epoch(epoch)
    sampler.probabilities  # scores the epoch
    return sampler.report, sampler.selector.visits.metrics(config.lambda1, config.loss_transform)


def reports(ablation, preset):
    """(full, ablated) ScoreReports at SCORED_EPOCH from the same records, and U, H."""
    full = D2ACEConfig.preset(preset, num_neighbors=3)
    (a, metrics), (b, _) = scored(full, SCORED_EPOCH[preset]), scored(full.ablate(ablation), SCORED_EPOCH[preset])
    return a, b, metrics


def same(a, b):
    return torch.equal(a, b)


def changed_parts(full, ablated):
    """{(metric, part)} that differ, and whether p_β, the pressure and the mixture differ."""
    parts = {
        (m, p)
        for m in ("uncertainty", "hardness")
        for p in PARTS
        if not same(getattr(getattr(full, m), p), getattr(getattr(ablated, m), p))
    }
    return (
        parts,
        full.p_beta != ablated.p_beta,
        full.pressure != ablated.pressure,
        not same(full.probabilities, ablated.probabilities),
    )


def every(part_names):
    return {(m, p) for m in ("uncertainty", "hardness") for p in part_names}


MIXING = {
    "hardness_only": 0.0,
    "uncertainty_only": 1.0,
    "fixed_mix_0.7": 0.7,
    "fixed_mix_0.5": 0.5,
    "fixed_mix_0.3": 0.3,
}


@pytest.mark.parametrize("preset", ["paper", "reference"])
@pytest.mark.parametrize("ablation", list(MIXING))
def test_mixing_ablations_change_only_the_mixing_coefficient(ablation, preset):
    """B-F: both distributions and everything behind them are the full method's; p_β is fixed."""
    for native in (True, False):
        with d2ace_ext.force_fallback() if not native else contextlib.nullcontext():
            full, ablated, _ = reports(ablation, preset)
        parts, beta, pressure, mixture = changed_parts(full, ablated)
        assert full.p_beta == pytest.approx(0.6) and ablated.p_beta == MIXING[ablation]
        assert parts == set() and beta and not pressure and mixture
        p = MIXING[ablation]
        expected = p * full.uncertainty.probabilities + (1 - p) * full.hardness.probabilities
        torch.testing.assert_close(ablated.probabilities, expected / expected.sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_no_correlation_zeroes_phi_and_keeps_the_label_weights(preset):
    """H: φ = 0 (and no C), so w = δ; v and δ are the full method's."""
    for native in (True, False):
        with d2ace_ext.force_fallback() if not native else contextlib.nullcontext():
            full, ablated, _ = reports("no_correlation", preset)
        parts, beta, pressure, mixture = changed_parts(full, ablated)
        assert parts == every(("phi", "correlation", "probabilities"))
        assert not beta and not pressure and mixture
        for m in ("uncertainty", "hardness"):
            assert not bool(getattr(ablated, m).phi.any()) and not bool(getattr(ablated, m).correlation.any())
            assert bool(getattr(full, m).phi.any())


@pytest.mark.parametrize("preset", ["paper", "reference"])
@pytest.mark.parametrize("ablation", ["no_label_weights", "linear_label_weights"])
def test_label_weight_ablations_change_v_and_what_reads_it(ablation, preset):
    """G: v = 1; I: v = (μ + σ)/2, the log of the full v. δ = A v changes with it, and φ
    only where v enters it (the reference preset's label_weights_in_phi); C, p_β and the
    pressure are the full method's. Both run on the pure-PyTorch scorer (the fused kernel
    fixes v's form), so the comparison is made there."""
    with d2ace_ext.force_fallback():
        full, ablated, (unc, hard) = reports(ablation, preset)
    parts, beta, pressure, mixture = changed_parts(full, ablated)
    phi_reads_v = D2ACEConfig.preset(preset).label_weights_in_phi
    expected = every(("label_weights", "delta", "probabilities") + (("phi",) if phi_reads_v else ()))
    assert parts == expected and not beta and not pressure and mixture
    for metric, score, full_score in (
        (unc, ablated.uncertainty, full.uncertainty),
        (hard, ablated.hardness, full.hardness),
    ):
        if ablation == "no_label_weights":
            assert torch.equal(score.label_weights, torch.ones_like(score.label_weights))
            torch.testing.assert_close(score.delta, metric.sum(1), rtol=1e-12, atol=1e-15)
        else:
            torch.testing.assert_close(score.label_weights, torch.log(full_score.label_weights), rtol=1e-12, atol=0)
            torch.testing.assert_close(score.delta, metric @ score.label_weights, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("ablation", ["no_label_weights", "linear_label_weights", "no_correlation", "fixed_mix_0.5"])
def test_only_the_label_weight_ablations_leave_the_fused_scorer(ablation, monkeypatch):
    """With the extension loaded, G and I never call the fused score op (it fixes v's
    form) and agree with the forced fallback; H and the mixing variants still use it."""
    calls = []
    real = ops.score_visits
    monkeypatch.setattr(ops, "score_visits", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = D2ACEConfig.preset("paper", num_neighbors=3).ablate(ablation)
    native, _ = scored(config, SCORED_EPOCH["paper"])
    fused = ablation not in ("no_label_weights", "linear_label_weights")
    assert bool(calls) == (fused and ops.native_for(torch.zeros(1)))
    with d2ace_ext.force_fallback():
        fallback, _ = scored(config, SCORED_EPOCH["paper"])
    for m in ("uncertainty", "hardness"):
        for part in PARTS:
            torch.testing.assert_close(getattr(getattr(native, m), part), getattr(getattr(fallback, m), part))
    torch.testing.assert_close(native.probabilities, fallback.probabilities)


def test_no_correlation_agrees_between_the_fused_and_the_pure_path():
    _, native_ablated, _ = reports("no_correlation", "reference")
    with d2ace_ext.force_fallback():
        _, fallback_ablated, _ = reports("no_correlation", "reference")
    for m in ("uncertainty", "hardness"):
        torch.testing.assert_close(getattr(native_ablated, m).delta, getattr(fallback_ablated, m).delta)
    torch.testing.assert_close(native_ablated.probabilities, fallback_ablated.probabilities)


def test_every_figure5_letter_has_a_variant_and_names_are_checked():
    assert list(ABLATIONS) == [
        "hardness_only",
        "uncertainty_only",
        "fixed_mix_0.7",
        "fixed_mix_0.5",
        "fixed_mix_0.3",
        "no_label_weights",
        "no_correlation",
        "linear_label_weights",
    ]
    paper = D2ACEConfig.preset("paper")
    for name, fields in ABLATIONS.items():
        ablated = paper.ablate(name)
        differing = {k for k, v in ablated.to_dict().items() if v != paper.to_dict()[k]}
        assert differing and differing <= set(fields)  # nothing but the named component moves
        assert all(getattr(ablated, k) == v for k, v in fields.items())
        assert D2ACEConfig.preset("paper", ablation=name) == ablated == paper.replace(ablation=name)
    assert D2ACEConfig.preset("reference").ablate("hardness_only").window_unit == "visit"  # preset kept
    with pytest.raises(ValueError, match="ablation must be one of"):
        paper.ablate("no_uncertainty")
    with pytest.raises(ValueError, match="sets \\['p_beta_start'\\] itself"):
        paper.replace(ablation="fixed_mix_0.5", p_beta_start=0.2)
    with pytest.raises(ValueError, match="label_weight_form"):
        D2ACEConfig(label_weight_form="square")
    with pytest.raises(ValueError, match="correlation_enhancement"):
        D2ACEConfig(correlation_enhancement=0)


def test_the_harness_option_builds_the_variant_and_keys_it_by_digest():
    options = options_per_name(
        ["d2ace.ablation=fixed_mix_0.7"], "--selector-opt", ["random", "d2ace"], canonical_selector
    )
    assert options == {"d2ace": {"ablation": "fixed_mix_0.7"}}
    plain = Protocol(folds=3, epochs=20, min_positives=5)
    ablated = Protocol(folds=3, epochs=20, min_positives=5, selector_options={"d2ace": {"ablation": "no_correlation"}})
    assert plain.digest() != ablated.digest()  # the name enters the digest through selector_options only
    x, y = make_multilabel(n=200, d=8, q=4, cardinality=1.5, seed=3)
    data = PreparedDataset("toy", x.double().numpy(), y.long().numpy(), list("abcd"), ablated).fold(0)
    key = RunKey.make("toy", "mlp", "d2ace", "paper", 0, ablated)
    config = build_sampler(key, data, ablated, seed=0, device="cpu").selector.config
    assert config == D2ACEConfig.preset("paper").scaled_to(20).ablate("no_correlation")
    selector = make_selector("d2ace", data.train_y, data.train_x, preset="reference", ablation="hardness_only")
    assert selector.config == D2ACEConfig.preset("reference").ablate("hardness_only")


def _record(dataset, selector, preset, fold, protocol, auc):
    key = RunKey.make(dataset, "mlp", selector, preset, fold, protocol).to_dict()
    return {"key": key, "metrics": {"macro_auc": auc}, "history": {"val_macro_auc": [0.5, 0.6, 0.55]}}


def test_the_ablation_report_pairs_each_variant_with_the_full_method():
    protocol = Protocol(epochs=3, folds=2, label_noise="extra:1.0")
    variant = with_ablation(protocol, "no_correlation")
    assert variant.selector_options == {"d2ace": {"ablation": "no_correlation"}}
    assert (
        variant.digest()
        == Protocol(
            epochs=3,
            folds=2,
            label_noise="extra:1.0",
            selector_options=options_per_name(["ablation=no_correlation"], "--selector-opt", ["d2ace"]),
        ).digest()
    )
    records = [_record("scene", "d2ace", "paper", f, protocol, 0.80 + 0.01 * f) for f in range(2)]
    records += [_record("scene", "d2ace", "paper", f, variant, 0.78 + 0.01 * f) for f in range(2)]
    records += [
        _record("scene", "d2ace", "reference", 0, variant, 0.1),  # another preset
        _record("scene", "random", "-", 0, protocol, 0.1),  # another selector
        _record("scene", "d2ace", "paper", 0, Protocol(epochs=3, folds=2), 0.1),
    ]  # clean labels
    chosen = ablation_records(records, protocol, ["scene"], "mlp", "paper", ["no_correlation", "hardness_only"])
    assert sorted((r["key"]["selector"], r["key"]["fold"]) for r in chosen) == [
        ("d2ace", 0),
        ("d2ace", 1),
        ("no_correlation", 0),
        ("no_correlation", 1),
    ]
    summary = summarise(chosen, ["scene"], ["mlp"], ["d2ace", "no_correlation", "hardness_only"])
    effect = summary["macro_auc"]["mlp"]["effect"]["no_correlation"]
    assert effect["mean"] == pytest.approx(0.02) and effect["cells"] == 2
    assert summary["macro_auc"]["mlp"]["effect"]["hardness_only"]["cells"] == 0


def test_the_full_method_column_keeps_only_the_folds_its_variants_ran():
    # The noise grid ran the full method on two repeats and its variants on one: the
    # full method's mean and rank must be over the variants' folds (repeat 0), not all ten.
    protocol = Protocol(epochs=3, folds=2, label_noise="extra:1.0")
    variant = with_ablation(protocol, "no_correlation")

    def run(repeat, fold, digest_of, auc):
        key = RunKey.make("scene", "mlp", "d2ace", "paper", fold, digest_of, repeat).to_dict()
        return {"key": key, "metrics": {"macro_auc": auc}, "history": {"val_macro_auc": [0.5, 0.6]}}

    records = [run(0, f, protocol, 0.80) for f in range(2)] + [run(1, f, protocol, 0.90) for f in range(2)]
    records += [run(0, f, variant, 0.82) for f in range(2)]
    chosen = ablation_records(records, protocol, ["scene"], "mlp", "paper", ["no_correlation"])
    assert (
        sorted((r["key"]["selector"], r["key"]["repeat"]) for r in chosen)
        == [("d2ace", 0)] * 2 + [("no_correlation", 0)] * 2
    )
    rows = summarise(chosen, ["scene"], ["mlp"], ["d2ace", "no_correlation"])["macro_auc"]["mlp"]["rows"]["scene"]
    assert rows["d2ace"]["mean"] == pytest.approx(0.80) and rows["d2ace"]["folds"] == 2
    assert rows["d2ace"]["rank"] == 2 and rows["no_correlation"]["rank"] == 1


def test_ablation_report_refuses_a_folder_without_results_or_matching_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ablation_report.main(["--results-dir", str(tmp_path), "--datasets", "scene"])
    assert f"no {tmp_path / 'results.jsonl'}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no empty tables written
    protocol = Protocol(epochs=3, folds=2)
    (tmp_path / "results.jsonl").write_text(json.dumps(_record("scene", "d2ace", "paper", 0, protocol, 0.8)) + "\n")
    with pytest.raises(SystemExit):
        ablation_report.main(["--results-dir", str(tmp_path), "--datasets", "scene", "--epochs", "3", "--folds", "2"])
    assert f"under protocol {protocol.digest()}" in capsys.readouterr().err


def test_ablation_report_command_on_a_real_set(data_dir, tmp_path, capsys):
    out = str(tmp_path / "res")
    common = [
        "compare",
        "--datasets",
        "emotions",
        "--models",
        "mlp",
        "--selectors",
        "d2ace",
        "--data-dir",
        data_dir,
        "--results-dir",
        out,
        "--folds",
        "2",
        "--epochs",
        "3",
        "--no-progress",
        "--label-noise",
        "missing:0.2",
    ]
    assert cli.main(common) == 0
    for name in ("no_correlation", "fixed_mix_0.5"):
        assert cli.main(common + ["--selector-opt", f"ablation={name}"]) == 0
    capsys.readouterr()
    assert (
        ablation_report.main(
            [
                "--results-dir",
                out,
                "--datasets",
                "emotions",
                "--epochs",
                "3",
                "--folds",
                "2",
                "--label-noise",
                "missing:0.2",
                "--ablations",
                "no_correlation",
                "fixed_mix_0.5",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| emotions |" in text and "no_correlation" in text and "fixed_mix_0.5" in text
    assert "6 runs" in text
    assert os.path.getsize(os.path.join(out, "ablation_paper_missing0.2.md")) > 0


def test_states_saved_before_the_ablation_fields_still_load():
    x, y = random_problem(30, 4, seed=0)
    sampler = D2ACESampler(y, 8, x, config=D2ACEConfig(num_neighbors=3))
    drive(sampler, y, epochs=2)
    state = sampler.state_dict()
    for name in ("label_weight_form", "correlation_enhancement"):
        del state["selector"]["config"][name]  # as a state written before these fields
    fresh = D2ACESampler(y, 8, x, config=D2ACEConfig(num_neighbors=3))
    fresh.load_state_dict(state)
    assert fresh.selector.visits.loss.equal(sampler.selector.visits.loss)
    ablated = D2ACESampler(y, 8, x, config=D2ACEConfig(num_neighbors=3).ablate("no_correlation"))
    with pytest.raises(ValueError, match="different D2ACEConfig"):
        ablated.load_state_dict(state)  # the missing fields mean the full method
