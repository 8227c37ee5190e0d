"""Preprocessing of a multi-label set before (or inside) cross-validation.

The published code (``docs/fidelity.md``, protocol section) filters and scales the
WHOLE set before the folds are cut: keep the top fraction of features by column sum
(rcv1subset* 0.02, yahoo-* 0.05), drop labels with 20 or fewer positives, drop
instances with no positive label, MinMax-scale. That lets the test fold shape the
filters and the scaler. :class:`Preprocessor` does the same steps but can be fitted on
a training part only (``mode="leak_free"``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np
from sklearn.preprocessing import MinMaxScaler

#: The published code's feature fractions, for its full-width files.
PUBLISHED_FEATURE_FRACTION = {"rcv1subset*": 0.02, "yahoo-*": 0.05}
#: Widths at or below which a file is taken as already reduced (the offline copies are:
#: rcv1subset1_top944.mat keeps 944 of 47,236 features, the .orig.arff.gz files 500).
_REDUCED_WIDTH = 5000


def published_feature_fraction(name: str, num_features: int) -> float:
    """The fraction of features the published code keeps for set ``name``; 1.0 for an
    already-reduced copy (d <= 5000), which applying 0.02 again would gut."""
    for pattern, fraction in PUBLISHED_FEATURE_FRACTION.items():
        if fnmatch.fnmatch(name, pattern) and num_features > _REDUCED_WIDTH:
            return fraction
    return 1.0


def top_features_by_column_sum(features: np.ndarray, fraction: float) -> np.ndarray:
    """Indices (k,) of the ``int(fraction * d)`` (at least 1) columns with the largest
    sums, in their original order. features (n, d)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"feature fraction must be in (0, 1], got {fraction}")
    d = features.shape[1]
    if fraction == 1.0:
        return np.arange(d)
    keep = max(1, int(fraction * d))
    order = np.argsort(-features.sum(0), kind="stable")[:keep]
    return np.sort(order)


def frequent_labels(labels: np.ndarray, min_positives: int) -> np.ndarray:
    """Indices of the label columns with at least ``min_positives`` positives. (n, q)."""
    return np.flatnonzero(labels.sum(0) >= min_positives)


@dataclass
class Preprocessor:
    """Feature retention, label and instance filters and MinMax scaling.

    ``fit(x, y)`` chooses the kept features and labels and fits the scaler on the rows
    given; ``transform(x, y)`` applies them. ``min_positives=21`` is the published
    "drop labels with 20 or fewer positives". ``drop_unlabelled`` removes rows with no
    positive among the kept labels (always applied to the rows the filters were fitted
    on; a leak-free test part keeps them, scikit-learn's ranking metrics handle them).
    """

    feature_fraction: float = 1.0
    min_positives: int = 21
    features_kept: np.ndarray = field(default=None, repr=False)
    labels_kept: np.ndarray = field(default=None, repr=False)
    scaler: MinMaxScaler = field(default=None, repr=False)

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "Preprocessor":
        self.features_kept = top_features_by_column_sum(features, self.feature_fraction)
        self.labels_kept = frequent_labels(labels, self.min_positives)
        if self.labels_kept.size == 0:
            raise ValueError(
                f"no label has {self.min_positives} or more positives in the {labels.shape[0]} "
                "rows the filters were fitted on; lower min_positives"
            )
        rows = labels[:, self.labels_kept].sum(1) > 0
        self.scaler = MinMaxScaler().fit(features[rows][:, self.features_kept])
        return self

    def transform(self, features: np.ndarray, labels: np.ndarray, *, drop_unlabelled: bool = True):
        """(features (m, k) float32 clipped to [0, 1], labels (m, q') float32, rows kept (n,) bool)."""
        if self.scaler is None:
            raise RuntimeError("Preprocessor.transform called before fit")
        y = labels[:, self.labels_kept]
        rows = y.sum(1) > 0 if drop_unlabelled else np.ones(len(y), dtype=bool)
        # A test row may fall outside the training range: clip so inputs stay in [0, 1].
        x = np.clip(self.scaler.transform(features[rows][:, self.features_kept]), 0.0, 1.0)
        return x.astype(np.float32), y[rows].astype(np.float32), rows


def preprocess_whole(
    features: np.ndarray, labels: np.ndarray, *, feature_fraction: float = 1.0, min_positives: int = 21
):
    """The published code's order: every filter and the scaler fitted on the whole set.
    Returns (features (m, k) float32, labels (m, q') float32, label columns kept (q',))."""
    prep = Preprocessor(feature_fraction, min_positives).fit(features, labels)
    x, y, _ = prep.transform(features, labels)
    return x, y, prep.labels_kept
