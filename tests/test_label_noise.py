"""Label noise (datasets/label_noise.py) and its place in the protocol: exact counts for
``extra``, expected counts for ``missing`` and ``flip``, clean test parts, seeds from
(seed, repeat, fold) alone, unchanged digests, and runs that survive empty label columns."""

import contextlib
import json
import math
import os

import numpy as np
import pytest

from d2ace_ext import cli
from d2ace_ext.datasets.label_noise import (
    LabelNoise,
    add_irrelevant,
    drop_positives,
    extra_counts,
    flip_class_conditional,
    flip_rates,
)
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.harness.experiment import Protocol, RunKey
from d2ace_ext.harness.fold_data import PreparedDataset
from d2ace_ext.harness.fold_run import run_fold

from support.evidence_digests import KNOWN_DIGESTS, LATER_SETTINGS, tabular_evidence_digests


def _labels(m=4000, q=12, seed=0):
    """0/1 int labels (m, q) with label frequencies from 5 % to 60 %."""
    rng = np.random.default_rng(seed)
    return (rng.random((m, q)) < np.linspace(0.05, 0.6, q)[None, :]).astype(np.int64)


def _within(observed, expected, variance, sigmas=5.0):
    return abs(observed - expected) <= sigmas * math.sqrt(variance)


def test_missing_drops_each_positive_with_the_rate_and_adds_none():
    y = _labels()
    noisy = drop_positives(y, 0.4, np.random.default_rng(1))
    assert noisy.dtype == y.dtype and not ((noisy == 1) & (y == 0)).any()
    positives = int(y.sum())
    dropped = positives - int(noisy.sum())
    assert _within(dropped, 0.4 * positives, positives * 0.4 * 0.6)
    assert np.array_equal(drop_positives(y, 0.0, np.random.default_rng(1)), y)
    assert int(drop_positives(y, 1.0, np.random.default_rng(1)).sum()) == 0


def test_extra_adds_exactly_the_rounded_count_of_negatives_per_row():
    y = np.array(
        [
            [0, 0, 0, 0, 0, 0],  # k = 0: 0 added
            [1, 0, 0, 0, 0, 0],  # k = 1: 0.5 rounds up to 1
            [1, 1, 0, 0, 0, 0],  # k = 2: 1
            [1, 1, 1, 0, 0, 0],  # k = 3: 1.5 rounds up to 2
            [1, 1, 1, 1, 1, 0],
        ]
    )  # k = 5: 2.5 -> 3, capped at its 1 negative
    assert extra_counts(y, 0.5).tolist() == [0, 1, 1, 2, 1]
    assert extra_counts(y, 1.0).tolist() == [0, 1, 2, 3, 1]
    assert extra_counts(np.ones((1, 10)), 0.35).tolist() == [0]  # no negative to add
    assert extra_counts((np.arange(20) < 10)[None, :], 0.35).tolist() == [4]  # 3.4999999999999996 rounds to 4
    for rate in (0.5, 1.0, 2.0):
        noisy = add_irrelevant(y, rate, np.random.default_rng(2))
        assert ((noisy - y) >= 0).all()  # positives kept, nothing removed
        assert (noisy.sum(1) - y.sum(1)).tolist() == extra_counts(y, rate).tolist()
    big = _labels(seed=3)
    noisy = add_irrelevant(big, 0.5, np.random.default_rng(4))
    assert np.array_equal(noisy.sum(1) - big.sum(1), extra_counts(big, 0.5))
    assert not ((noisy == 0) & (big == 1)).any()


def test_extra_picks_uniformly_among_the_negatives():
    y = np.zeros((6000, 5), dtype=np.int64)
    y[:, 0] = 1  # one positive: one extra label each
    noisy = add_irrelevant(y, 1.0, np.random.default_rng(5))
    counts = noisy[:, 1:].sum(0)
    assert counts.sum() == 6000 and (noisy[:, 0] == 1).all()
    for c in counts:  # each negative chosen with p = 1/4
        assert _within(c, 1500, 6000 * 0.25 * 0.75)


def test_flip_keeps_each_label_count_in_expectation():
    y = _labels(m=20000, seed=6)
    rate = 0.3
    noisy = flip_class_conditional(y, rate, np.random.default_rng(7))
    positives, m = y.sum(0), y.shape[0]
    rho = flip_rates(y, rate)
    np.testing.assert_allclose(rho, rate * positives / (m - positives))
    lost = ((y == 1) & (noisy == 0)).sum(0)
    gained = ((y == 0) & (noisy == 1)).sum(0)
    for j in range(y.shape[1]):
        assert _within(lost[j], rate * positives[j], positives[j] * rate * (1 - rate))
        variance = positives[j] * rate * (1 - rate) + (m - positives[j]) * rho[j] * (1 - rho[j])
        assert _within(noisy[:, j].sum(), positives[j], variance)
    assert (lost > 0).all() and (gained > 0).all()


def test_flip_rate_caps_at_one_for_labels_positive_in_most_rows():
    y = np.zeros((10, 3), dtype=np.int64)
    y[:8, 0] = 1  # P = 8, N = 2: 0.5 * 8 / 2 = 2, capped at 1
    y[:, 1] = 1  # no negative: nothing to gain
    y[:1, 2] = 1  # P = 1, N = 9
    np.testing.assert_allclose(flip_rates(y, 0.5), [1.0, 0.0, 0.5 / 9])
    noisy = flip_class_conditional(y, 0.5, np.random.default_rng(0))
    assert (noisy[8:, 0] == 1).all()  # both negatives of label 0 flipped


def test_noise_settings_are_parsed_canonically_and_checked():
    assert Protocol(label_noise="missing:.2").label_noise == "missing:0.2"
    assert Protocol(label_noise="extra:1").label_noise == "extra:1.0"
    assert Protocol(label_noise="extra:2.5").label_noise == "extra:2.5"  # extra may exceed 1
    assert Protocol(label_noise="missing:.2").digest() == Protocol(label_noise="missing:0.20").digest()
    assert Protocol(label_noise="missing:0.2").digest() != Protocol(label_noise="missing:0.4").digest()
    assert Protocol(label_noise="flip:0.1").digest() != Protocol().digest()
    assert LabelNoise.parse("flip:0.1") == LabelNoise("flip", 0.1)
    for bad, match in [
        ("noise:0.2", "KIND:RATE"),
        ("missing", "KIND:RATE"),
        ("missing:0.2:1", "KIND:RATE"),
        ("missing:x", "must be a number"),
        ("missing:1.5", r"\[0, 1\]"),
        ("flip:-0.1", r"\[0, 1\]"),
        ("extra:-1", ">= 0"),
        ("extra:inf", ">= 0"),
        (0.2, "KIND:RATE"),
    ]:
        with pytest.raises(ValueError, match=match):
            Protocol(label_noise=bad)
    with pytest.raises(ValueError, match="protocol label_noise"):
        Protocol(label_noise="missing:2")


def test_clean_protocol_digests_are_unchanged():
    """label_noise stays out of the digest while None, so committed evidence keeps its keys."""
    for digest, settings in KNOWN_DIGESTS.items():
        assert Protocol(**settings).digest() == digest
        assert Protocol(**settings, label_noise=None).digest() == digest
    for digest, settings in LATER_SETTINGS.items():
        assert Protocol(**settings).digest() == digest
    tabular = tabular_evidence_digests()
    assert tabular and tabular <= set(KNOWN_DIGESTS) | set(LATER_SETTINGS)


def _prepared(protocol, n=400):
    x, y = make_multilabel(n=n, d=12, q=5, cardinality=1.8, seed=3)
    return PreparedDataset("toy", x.double().numpy(), y.long().numpy(), [f"l{j}" for j in range(5)], protocol)


@pytest.mark.parametrize("preprocessing", ["reference", "leak_free"])
def test_noise_reaches_training_and_validation_parts_never_the_test_part(preprocessing):
    common = dict(folds=3, epochs=1, min_positives=5, preprocessing=preprocessing)
    clean = _prepared(Protocol(**common)).fold(1)
    noisy = _prepared(Protocol(**common, label_noise="missing:0.5")).fold(1)
    assert clean.test_y.equal(noisy.test_y) and clean.test_x.equal(noisy.test_x)
    assert clean.train_x.equal(noisy.train_x) and clean.val_x.equal(noisy.val_x)
    for part in ("train_y", "val_y"):
        before, after = getattr(clean, part), getattr(noisy, part)
        assert not ((after == 1) & (before == 0)).any()  # missing only removes
        kept = float(after.sum() / before.sum())
        assert 0.4 < kept < 0.6 and not after.equal(before)
    extra = _prepared(Protocol(**common, label_noise="extra:1.0")).fold(1)
    added = (extra.train_y - clean.train_y).sum(1).long().numpy()
    assert np.array_equal(added, extra_counts(clean.train_y.numpy(), 1.0))
    assert clean.test_y.equal(extra.test_y)


def test_noise_is_seeded_by_seed_repeat_and_fold_only():
    noisy = dict(folds=3, epochs=1, min_positives=5, label_noise="flip:0.2")
    a = _prepared(Protocol(**noisy)).fold(0)
    b = _prepared(Protocol(**noisy)).fold(0)
    assert a.train_y.equal(b.train_y) and a.val_y.equal(b.val_y)  # reproducible
    # Selector options (and so the selector under comparison) do not move the noise.
    c = _prepared(Protocol(**noisy, selector_options={"d2ace": {"num_neighbors": 3}})).fold(0)
    assert a.train_y.equal(c.train_y) and a.val_y.equal(c.val_y)
    prepared = _prepared(Protocol(**noisy))
    clean = _prepared(Protocol(folds=3, epochs=1, min_positives=5))
    # Another fold, repeat or seed draws other noise (compared through the flips it made).
    flips = lambda p, c, k, r=0: p.fold(k, r).train_y != c.fold(k, r).train_y  # noqa: E731
    f0, f1 = flips(prepared, clean, 0), flips(prepared, clean, 1)
    assert f0.shape != f1.shape or not f0.equal(f1)
    reseeded = Protocol(**{**noisy, "seed": 56})
    g = flips(_prepared(reseeded), _prepared(Protocol(folds=3, epochs=1, min_positives=5, seed=56)), 0)
    assert g.shape != f0.shape or not g.equal(f0)
    r1 = flips(prepared, clean, 0, 1)
    assert r1.shape != f0.shape or not r1.equal(f0)


@pytest.mark.parametrize("selector", ["random", "hard_imb", "dihcl", "d2ace"])
def test_a_run_survives_training_labels_without_positives(selector):
    """missing:1.0 empties every training and validation column: the run completes, the
    validation AUC is undefined (NaN) every epoch and the last epoch is tested."""
    protocol = Protocol(
        folds=3,
        epochs=2,
        lr=1e-3,
        lr_warmup_epochs=0,
        min_positives=5,
        label_noise="missing:1.0",
        selector_options={s: {"warmup_epochs": 1} for s in ("d2ace", "hard_imb", "dihcl")},
    )
    data = _prepared(protocol).fold(0)
    assert float(data.train_y.sum()) == 0.0 and float(data.test_y.sum()) > 0
    with pytest.warns(RuntimeWarning) if selector in ("hard_imb", "d2ace") else contextlib.nullcontext():
        record = run_fold(RunKey.make("toy", "mlp", selector, "paper", 0, protocol), data, protocol, progress=False)
    assert all(math.isnan(v) for v in record["history"]["val_macro_auc"])
    assert record["best_epoch"] == 1 and 0.0 <= record["metrics"]["macro_auc"] <= 1.0


def test_command_runs_a_real_set_under_missing_labels(data_dir, tmp_path, capsys):
    out = str(tmp_path / "res")
    argv = [
        "run",
        "--dataset",
        "yeast",
        "--model",
        "mlp",
        "--data-dir",
        data_dir,
        "--results-dir",
        out,
        "--folds",
        "2",
        "--epochs",
        "2",
        "--lr-warmup-epochs",
        "0",
        "--no-progress",
        "--label-noise",
        "missing:0.4",
    ]
    for selector in ("hard_imb", "dihcl", "d2ace"):
        assert cli.main(argv + ["--selector", selector, "--selector-opt", "warmup_epochs=1"]) == 0
        text = capsys.readouterr().out
        assert "label noise missing:0.4" in text and "Macro-AUC" in text
    records = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
    assert len(records) == 6 and len({r["key"]["protocol"] for r in records}) == 3
    assert all(0.0 <= r["metrics"]["macro_auc"] <= 1.0 for r in records)


def test_command_rejects_a_bad_noise_setting(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--dataset", "yeast", "--results-dir", str(tmp_path), "--label-noise", "missing:1.5"])
    assert "argument --label-noise" in capsys.readouterr().err
