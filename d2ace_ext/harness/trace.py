"""Snapshots of a run for the paper's figures: the sampling probabilities with each
instance's loss and outlier flag (Fig. 1 / A5), and per-label validation AUC with the
selector's label weights every epoch (Fig. 2 / A6). Saved as one ``.npz`` per run."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import LocalOutlierFactor

from ..selectors.registry import SELECTOR_CLASSES


def outlier_flags(features: torch.Tensor, neighbors: int = 20) -> np.ndarray:
    """(n,) bool: Local Outlier Factor's outliers among the training features (n, d)."""
    n = features.shape[0]
    if n < 3:
        return np.zeros(n, dtype=bool)
    lof = LocalOutlierFactor(n_neighbors=min(neighbors, n - 1))
    return lof.fit_predict(features.cpu().numpy()) == -1


def static_label_weights(selector: str, labels: torch.Tensor) -> np.ndarray | None:
    """The fixed per-label priority (q,) of the label-statistics baselines, from the
    selector's class (``Selector.static_label_weights``: Balance's minority weight
    n / (2 min(pos, neg)), Hard-Imb's IRLbl on its minority labels, 1 elsewhere).
    None for the others and for a name no longer registered."""
    cls = SELECTOR_CLASSES.get(selector)
    weights = cls.static_label_weights(labels) if cls is not None else None
    return None if weights is None else weights.cpu().to(torch.float64).numpy()


class RunTrace:
    """Collects the snapshots of one run. n training rows, q labels, snapshot epochs."""

    def __init__(
        self,
        selector: str,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        label_names: list[str],
        epochs: int,
        snapshots: int = 10,
    ) -> None:
        self.n, self.q = train_y.shape
        step = max(1, epochs // snapshots)
        self.snapshot_epochs = sorted(set(range(0, epochs, step)) | {epochs - 1})
        self.outlier = outlier_flags(train_x)
        self.static = static_label_weights(selector, train_y)
        self.label_names = list(label_names)
        self.epochs, self.probabilities, self.instance_loss = [], [], []
        self.label_epochs, self.label_auc, self.weights_u, self.weights_h = [], [], [], []

    def snapshot(self, epoch: int, probabilities: torch.Tensor, instance_loss: torch.Tensor) -> None:
        """At the start of ``epoch``: the probabilities it draws with (n,), the loss (n,)."""
        self.epochs.append(epoch)
        self.probabilities.append(probabilities.detach().cpu().to(torch.float64).numpy())
        self.instance_loss.append(instance_loss.detach().cpu().to(torch.float32).numpy())

    def epoch_end(self, epoch: int, label_auc: np.ndarray, report) -> None:
        """After ``epoch``: validation AUC per label (q,), the D2ACE report (or None)."""
        self.label_epochs.append(epoch)
        self.label_auc.append(label_auc)
        nan = np.full(self.q, np.nan)
        self.weights_u.append(report.uncertainty.label_weights.cpu().double().numpy() if report is not None else nan)
        self.weights_h.append(report.hardness.label_weights.cpu().double().numpy() if report is not None else nan)

    def save(self, path: str) -> None:
        rows = len(self.label_epochs)
        static = np.tile(self.static if self.static is not None else np.full(self.q, np.nan), (rows, 1))
        np.savez_compressed(
            path,
            epochs=np.asarray(self.epochs, dtype=np.int64),
            probabilities=np.asarray(self.probabilities, dtype=np.float64).reshape(-1, self.n),
            instance_loss=np.asarray(self.instance_loss, dtype=np.float32).reshape(-1, self.n),
            outlier=self.outlier,
            label_epochs=np.asarray(self.label_epochs, dtype=np.int64),
            label_auc=np.asarray(self.label_auc, dtype=np.float64).reshape(-1, self.q),
            label_weights_u=np.asarray(self.weights_u).reshape(-1, self.q),
            label_weights_h=np.asarray(self.weights_h).reshape(-1, self.q),
            label_weights=static,
            label_names=np.asarray(self.label_names, dtype=str),
        )
