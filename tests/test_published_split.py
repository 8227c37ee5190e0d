"""The published code's split, re-stated in harness/published_split.py, against indices
that scikit-multilearn 0.2.0 itself produced (run once in a scratch environment:
``np.random.seed(s); IterativeStratification(n_splits=k, order=1).split(X, y)``), and
torch's ``random_split`` for the validation part."""

import hashlib

import numpy as np
import pytest

from d2ace_ext.datasets.mulan import load_dataset
from d2ace_ext.harness.experiment import Protocol
from d2ace_ext.harness.fold_data import PreparedDataset
from d2ace_ext.harness.published_split import published_folds, published_validation_split

# y = (RandomState(0).rand(60, 5) < 0.3), 3 folds, NumPy seed 7: ties and label-less rows.
SYNTHETIC_TEST_FOLDS = [
    [5, 6, 12, 16, 17, 19, 20, 21, 29, 32, 35, 38, 40, 43, 47, 48, 49, 52, 54, 55],
    [3, 4, 8, 9, 11, 15, 22, 23, 25, 26, 27, 28, 31, 36, 37, 42, 45, 46, 50, 57],
    [0, 1, 2, 7, 10, 13, 14, 18, 24, 30, 33, 34, 39, 41, 44, 51, 53, 56, 58, 59],
]

# Published preprocessing, 5 folds, NumPy seed 55: sha256 of the test folds' int64 indices
# (first 16 hex digits), fold sizes, the first test rows of fold 0, and random_split(seed 55)
# of fold 0's training rows: first fit and validation rows, in random_split's order.
REAL = {
    "yeast": (
        "f5949dc558860e05",
        [477, 476, 481, 495, 488],
        [4, 9, 13, 14, 21],
        [1197, 902, 1574, 1753, 504],
        [655, 1080, 1280, 342, 1013],
        (1746, 194),
    ),
    "emotions": (
        "5893d42c12d1a321",
        [115, 119, 125, 118, 116],
        [0, 2, 4, 13, 15],
        [406, 531, 421, 558, 436],
        [12, 471, 291, 75, 301],
        (431, 47),
    ),
    "cal500": (
        "11ff8d0526b5d327",
        [100, 96, 96, 101, 109],
        [3, 8, 12, 13, 18],
        [379, 495, 471, 467, 310],
        [459, 437, 210, 308, 487],
        (362, 40),
    ),
}


def _digest(folds):
    h = hashlib.sha256()
    for _, test in folds:
        h.update(np.asarray(test, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def test_synthetic_folds_match_scikit_multilearn():
    y = (np.random.RandomState(0).rand(60, 5) < 0.3).astype(int)
    assert (y.sum(1) == 0).any()  # the negative-evidence pass is exercised
    folds = published_folds(y, 3, seed=7)
    assert [test.tolist() for _, test in folds] == SYNTHETIC_TEST_FOLDS
    for train, test in folds:
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(60))
        assert np.all(np.diff(train) > 0)


def test_validation_split_is_random_split_order_and_partition():
    rows = np.arange(100, 200)
    fit, val = published_validation_split(rows, 0.1, seed=55)
    assert len(val) == 10 and len(fit) == 90
    assert sorted(np.concatenate([fit, val]).tolist()) == rows.tolist()
    assert not np.all(np.diff(fit) > 0)  # kept in the permutation's order, not sorted
    again = published_validation_split(rows, 0.1, seed=55)
    assert np.array_equal(fit, again[0]) and np.array_equal(val, again[1])
    assert len(published_validation_split(np.arange(19), 0.1)[1]) == 1  # int(0.1 * 19)


def test_bad_arguments():
    with pytest.raises(ValueError):
        published_folds(np.ones(5), 2)
    with pytest.raises(ValueError):
        published_folds(np.ones((3, 2)), 5)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_sets_match_the_published_split(data_dir, name):
    digest, sizes, first_test, first_fit, first_val, counts = REAL[name]
    x, y, names = load_dataset(name, data_dir)
    prepared = PreparedDataset(name, x, y, names, Protocol(folds_from="published"))
    folds = prepared.splits
    assert _digest(folds) == digest
    assert [len(test) for _, test in folds] == sizes and folds[0][1][:5].tolist() == first_test
    fit, val = published_validation_split(folds[0][0], 0.1, seed=55)
    assert fit[:5].tolist() == first_fit and val[:5].tolist() == first_val and (len(fit), len(val)) == counts
    fold = prepared.fold(0)  # the harness uses exactly these rows, fit rows in that order
    assert np.array_equal(fold.train_x.numpy(), prepared.features[fit].astype(np.float32))
    assert fold.val_y.shape[0] == counts[1] and fold.test_y.shape[0] == sizes[0]


def test_repeats_cut_other_folds():
    y = (np.random.RandomState(1).rand(80, 4) < 0.4).astype(int)
    protocol = Protocol(folds=4, folds_from="published", min_positives=1)
    prepared = PreparedDataset("toy", np.random.RandomState(2).rand(80, 3), y, list("abcd"), protocol)
    assert protocol.run_seed(0, 3) == 55 and protocol.run_seed(2, 1) == 2055
    first, second = prepared.splits_of(0), prepared.splits_of(1)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, second))
    assert prepared.splits_of(0) is first
    assert Protocol(folds_from="published").digest() != Protocol().digest()
    assert Protocol(folds=4).run_seed(1, 3) == 1058
