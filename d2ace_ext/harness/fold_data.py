"""From a loaded data set to the tensors of each fold, under either preprocessing mode,
with the protocol's label noise (if any) on the training and validation parts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets.label_noise import LabelNoise, part_generators
from ..datasets.preprocess import Preprocessor, preprocess_whole, published_feature_fraction
from .experiment import Protocol
from .folds import fold_indices, validation_split
from .published_split import published_folds, published_validation_split


@dataclass
class FoldData:
    """One fold's parts as float32 tensors: x (m, d) in [0, 1], y (m, q) 0/1."""

    fold: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    label_names: list[str]


class PreparedDataset:
    """A data set cut into the protocol's folds. ``fold(k)`` builds fold k's tensors.

    features (n, d), labels (n, q) 0/1 as read; name picks the published feature
    fraction when ``protocol.feature_fraction`` is None.
    """

    def __init__(
        self, name: str, features: np.ndarray, labels: np.ndarray, label_names: list[str], protocol: Protocol
    ) -> None:
        self.name, self.protocol = name, protocol
        fraction = protocol.feature_fraction
        if fraction is None:
            fraction = published_feature_fraction(name, features.shape[1])
        self.feature_fraction = fraction
        if protocol.preprocessing == "reference":
            x, y, kept = preprocess_whole(
                features, labels, feature_fraction=fraction, min_positives=protocol.min_positives
            )
            self.features, self.labels = x, y
            self.label_names = [label_names[j] for j in kept]
        else:
            self.features, self.labels, self.label_names = features, labels, list(label_names)
        self._splits: dict[int, list] = {}

    def splits_of(self, repeat: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train rows, test rows) of each fold of repeat ``repeat``, cut once and kept."""
        if repeat not in self._splits:
            seed = self.protocol.fold_seed(repeat)
            cut = published_folds if self.protocol.folds_from == "published" else fold_indices
            self._splits[repeat] = cut(self.labels, self.protocol.folds, seed)
        return self._splits[repeat]

    @property
    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The folds of repeat 0."""
        return self.splits_of(0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n, d, q) after the whole-set filters (before them in leak-free mode)."""
        return self.features.shape[0], self.features.shape[1], self.labels.shape[1]

    def fold(self, k: int, repeat: int = 0) -> FoldData:
        """Fold k of repeat ``repeat``. Published folds keep ``random_split``'s row order in
        the fitting part (the published warm-up walks it in that order).

        Under ``protocol.label_noise`` the fitting and validation labels are corrupted after
        the preprocessing filters (which see clean labels, as a data set's own curation
        would), from a seed of (seed, repeat, k) alone; the test labels stay clean. A noisy
        part may then hold label columns or rows without positives."""
        train_rows, test_rows = self.splits_of(repeat)[k]
        if self.protocol.folds_from == "published":
            fit_rows, val_rows = published_validation_split(
                train_rows, self.protocol.val_fraction, self.protocol.fold_seed(repeat)
            )
        else:
            fit_rows, val_rows = validation_split(
                self.labels, train_rows, self.protocol.val_fraction, self.protocol.fold_seed(repeat) + k
            )
        x, y = self.features, self.labels
        if self.protocol.preprocessing == "reference":
            parts = [(x[rows], y[rows]) for rows in (fit_rows, val_rows, test_rows)]
            names = self.label_names
        else:
            prep = Preprocessor(self.feature_fraction, self.protocol.min_positives).fit(x[train_rows], y[train_rows])
            parts = [
                prep.transform(x[fit_rows], y[fit_rows])[:2],
                prep.transform(x[val_rows], y[val_rows])[:2],
                prep.transform(x[test_rows], y[test_rows], drop_unlabelled=False)[:2],
            ]
            names = [self.label_names[j] for j in prep.labels_kept]
        if self.protocol.label_noise is not None:
            noise = LabelNoise.parse(self.protocol.label_noise)
            rngs = part_generators(self.protocol.seed, repeat, k)
            parts = [(part_x, noise.apply(part_y, rng)) for (part_x, part_y), rng in zip(parts[:2], rngs)] + parts[2:]
        tensors = [torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32) for part in parts for a in part]
        return FoldData(k, *tensors, label_names=names)
