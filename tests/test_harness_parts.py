"""The harness's parts: validation AUC, preprocessing, folds, protocol keys, results
file, comparison tables."""

import json
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import roc_auc_score

from d2ace_ext.datasets.preprocess import (
    Preprocessor,
    preprocess_whole,
    published_feature_fraction,
    top_features_by_column_sum,
)
from d2ace_ext.harness.experiment import Protocol, RunKey, canonical_selector
from d2ace_ext.harness.folds import fold_indices, validation_split
from d2ace_ext.harness.results import ResultsStore
from d2ace_ext.harness.tables import markdown, summarise, write_tables
from d2ace_ext.metrics import mean_auc, per_label_auc


def test_rank_auc_matches_scikit_learn_with_ties_and_one_class_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 5)) < 0.3).astype(int)
    y[:, 4] = 1  # one class: NaN
    s = np.round(rng.random((60, 5)), 1)  # many ties
    auc = per_label_auc(y, s)
    for j in range(4):
        assert auc[j] == pytest.approx(roc_auc_score(y[:, j], s[:, j]), abs=1e-12)
    assert math.isnan(auc[4])
    assert mean_auc(auc) == pytest.approx(np.mean(auc[:4]))
    assert math.isnan(mean_auc(np.full(3, np.nan)))
    with pytest.raises(ValueError, match="scores"):
        per_label_auc(y, s[:, :3])


def test_whole_set_preprocessing_by_hand():
    x = np.array([[0.0, 5.0, 1.0], [2.0, 1.0, 1.0], [4.0, 0.0, 1.0], [1.0, 0.0, 9.0]])
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert list(top_features_by_column_sum(x, 2 / 3)) == [0, 2]  # sums 7, 6, 12
    out_x, out_y, kept = preprocess_whole(x, y, min_positives=2)
    assert list(kept) == [0, 2]  # label 1 has one positive: dropped
    assert out_y.shape == (3, 2)  # row 3 has no kept label: dropped
    np.testing.assert_allclose(out_x[:, 0], [0.0, 0.5, 1.0])  # MinMax over the kept rows
    assert np.all(out_x[:, 2] == 0)  # a constant column scales to 0
    with pytest.raises(ValueError, match="min_positives"):
        preprocess_whole(x, y, min_positives=5)


def test_leak_free_preprocessing_fits_on_the_training_rows_only():
    train_x, train_y = np.array([[0.0], [10.0]]), np.array([[1], [1]])
    prep = Preprocessor(min_positives=1).fit(train_x, train_y)
    x, y, rows = prep.transform(np.array([[5.0], [20.0], [-3.0]]), np.array([[0], [1], [1]]), drop_unlabelled=False)
    np.testing.assert_allclose(x[:, 0], [0.5, 1.0, 0.0])  # clipped outside the training range
    assert rows.all() and y.shape == (3, 1)


def test_published_feature_fraction_only_cuts_full_width_files():
    assert published_feature_fraction("rcv1subset1", 47236) == 0.02
    assert published_feature_fraction("rcv1subset1", 944) == 1.0  # the offline copy is already reduced
    assert published_feature_fraction("yahoo-Arts1", 23146) == 0.05
    assert published_feature_fraction("yeast", 103) == 1.0


def test_folds_partition_the_rows_and_stratify_each_label():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 4)) < [0.5, 0.2, 0.1, 0.3]).astype(int)
    splits = fold_indices(y, 5, seed=55)
    tests = np.concatenate([test for _, test in splits])
    assert sorted(tests.tolist()) == list(range(200))
    for train, test in splits:
        assert not set(train) & set(test)
        share = y[test].sum(0) / y.sum(0)
        assert np.all(np.abs(share - 0.2) < 0.06)  # iterative stratification spreads positives
    again = fold_indices(y, 5, seed=55)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    fit, val = validation_split(y, splits[0][0], 0.1, seed=0)
    assert len(val) == pytest.approx(0.1 * len(splits[0][0]), abs=2)
    assert sorted(np.concatenate([fit, val]).tolist()) == sorted(splits[0][0].tolist())
    with pytest.raises(ValueError, match="folds"):
        fold_indices(y, 1, seed=0)


def test_protocol_digest_and_checks():
    assert Protocol().digest() == Protocol().digest()
    assert Protocol(epochs=50).digest() != Protocol().digest()
    with pytest.raises(ValueError, match="preprocessing"):
        Protocol(preprocessing="whole")
    key = RunKey.make("yeast", "clif", "Hard-Imb", "paper", 0, Protocol())
    assert key.selector == "hard_imb" and key.preset == "-"
    assert canonical_selector("ML-Unc") == "ml_unc"


def test_results_store_last_record_wins_and_torn_lines_are_ignored(tmp_path):
    store = ResultsStore(str(tmp_path))
    key = RunKey.make("yeast", "mlp", "random", "paper", 0, Protocol()).to_dict()
    store.append({"key": key, "metrics": {"macro_auc": 0.5}})
    store.append({"key": key, "metrics": {"macro_auc": float("nan")}})
    with open(store.path, "a") as handle:
        handle.write('{"key": {"dataset": "ye')  # a write cut short
    records = store.records()
    assert len(records) == 1
    assert math.isnan(next(iter(records.values()))["metrics"]["macro_auc"])


def _records(values: dict) -> list[dict]:
    out = []
    for (dataset, selector), folds in values.items():
        for fold, auc in enumerate(folds):
            out.append(
                {
                    "key": {
                        "dataset": dataset,
                        "model": "mlp",
                        "selector": selector,
                        "preset": "-",
                        "fold": fold,
                        "protocol": "x",
                    },
                    "metrics": {"macro_auc": auc, "ranking_loss": 1 - auc},
                }
            )
    return out


def test_tables_rank_average_and_test_like_the_paper(tmp_path):
    values = {
        ("a", "random"): [0.70, 0.72],
        ("a", "ml_unc"): [0.71, 0.73],
        ("a", "d2ace"): [0.71, 0.73],
        ("b", "random"): [0.80, 0.80],
        ("b", "ml_unc"): [0.79, 0.79],
        ("b", "d2ace"): [0.82, 0.84],
        ("c", "random"): [0.60, 0.62],
        ("c", "ml_unc"): [0.65, 0.61],
        ("c", "d2ace"): [0.66, 0.66],
    }
    sel = ["random", "ml_unc", "d2ace"]
    summary = summarise(_records(values), ["a", "b", "c"], ["mlp"], sel)
    auc = summary["macro_auc"]["mlp"]
    assert [auc["rows"]["a"][s]["rank"] for s in sel] == [3, 1, 1]  # a tie shares the best rank
    assert [auc["rows"]["b"][s]["rank"] for s in sel] == [2, 3, 1]
    assert auc["rows"]["b"]["d2ace"]["mean"] == pytest.approx(0.83)
    assert auc["rows"]["b"]["d2ace"]["std"] == pytest.approx(0.01)
    assert auc["average_rank"]["d2ace"] == pytest.approx(1.0)
    loss = summary["ranking_loss"]["mlp"]
    assert [loss["rows"]["b"][s]["rank"] for s in sel] == [2, 3, 1]  # lower is better there
    d2 = [0.72, 0.83, 0.66]
    rnd = [0.71, 0.80, 0.61]
    assert auc["wilcoxon"]["random"]["datasets"] == pytest.approx(wilcoxon(np.subtract(d2, rnd)).pvalue)
    text = markdown(summary, ["a", "b", "c"], ["mlp"], sel)
    assert "| b | 0.8000±0.0000 (2) | 0.7900±0.0000 (3) | 0.8300±0.0100 (1) |" in text
    assert "Avg(Rank)" in text and "Wilcoxon" in text
    paths = write_tables(summary, ["a", "b", "c"], ["mlp"], sel, str(tmp_path))
    assert json.load(open(paths[2]))["summary"]["macro_auc"]["mlp"]["rows"]["a"]["d2ace"]["rank"] == 1
    rows = open(paths[1]).read().splitlines()
    assert len(rows) == 1 + 8 * 3 * 3  # header + every metric × data set × selector
    assert "macro_auc,mlp,b,d2ace,0.83" in "\n".join(rows)
