"""Hard-Imb (Zhou et al. 2024, multi-label adaptive batch selection).

Once per training set: minority labels are those whose imbalance ratio
IRLbl_j = max_k |Y_k| / |Y_j| exceeds the mean over labels (labels without positives
excluded). For a minority label j and a positive instance i, the local imbalance
c_ij is the fraction of its K = 5 nearest neighbours not having label j; entries with
0 < c_ij < 1 are normalised per label, c̃_ij = c_ij / Σ_i' c_i'j, the others are 0; the
instance's imbalance weight is W_i = 1 + Σ_j c̃_ij over minority labels.

Per epoch: w_i = W_i × ℓ_i, ℓ_i the mean per-label BCE of the instance's latest visit
(ln 2, an uninformed prediction, before its first visit); sampling by Hard-Imb's own
value quantiser, Q_i = ⌈w_i/Δ⌉ with Δ = max(w)/n, P_i ∝ s^(Q_i/n) (or Eqs. 13-14 with
``quantizer="index"``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from ..neighbors import KNN_BACKENDS, resolve_neighbors
from ._common import QuantizedConfig, QuantizedSelector, check_choice, check_rule, is_int

_ROW_CHUNK = 1 << 14


@dataclass(frozen=True)
class HardImbConfig(QuantizedConfig):
    num_neighbors: int = 5
    quantizer: str = "value"
    knn_backend: str = "auto"  # the K-NN search: exact, FAISS, or by n (d2ace_ext.neighbors)

    def _check(self) -> None:
        super()._check()
        check_rule(
            "HardImbConfig",
            "num_neighbors",
            self.num_neighbors,
            is_int(self.num_neighbors) and self.num_neighbors >= 1,
            "an integer >= 1",
        )
        check_choice("HardImbConfig", "quantizer", self.quantizer, ("value", "index"))
        check_choice("HardImbConfig", "knn_backend", self.knn_backend, KNN_BACKENDS)


def minority_labels(labels: torch.Tensor) -> torch.Tensor:
    """(q,) bool: IRLbl_j > mean IRLbl over the labels that have a positive."""
    count = (labels != 0).sum(0).to(torch.float64)
    present = count > 0
    ratio = torch.where(present, count.max() / count.clamp(min=1.0), torch.zeros_like(count))
    mean = ratio[present].mean() if bool(present.any()) else torch.tensor(0.0, dtype=torch.float64)
    return present & (ratio > mean)


def imbalance_weights(labels: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    """W (n,) float64 from labels (n, q) 0/1 and neighbours (n, K) int64 (self excluded)."""
    relevant = labels != 0
    minority = minority_labels(labels)
    y = relevant[:, minority]  # (n, m)
    k = neighbors.shape[1]
    local = torch.zeros(y.shape, dtype=torch.float64, device=y.device)
    for start in range(0, y.shape[0], _ROW_CHUNK):  # bounded (rows, K, m) gather
        stop = min(start + _ROW_CHUNK, y.shape[0])
        others = (~y[neighbors[start:stop]]).sum(1).to(torch.float64) / k
        local[start:stop] = torch.where(y[start:stop], others, torch.zeros_like(others))
    usable = (local > 0) & (local < 1)
    local = torch.where(usable, local, torch.zeros_like(local))
    total = local.sum(0, keepdim=True)
    normalised = torch.where(
        total > 0, local / total.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(local)
    )
    return 1.0 + normalised.sum(1)


class HardImbSelector(QuantizedSelector):
    """labels (n, q) 0/1; features (n, d) for the K-NN (or ``neighbors=`` (n, K)
    precomputed indices, self excluded); ``config`` or keyword options of
    :class:`HardImbConfig`; device: where the state lives (default: labels'); shard:
    this rank's rows of a row-sharded state (None: every row).

    State: loss (n,) float32, the mean BCE of each instance's latest visit (+inf for a
    saturated wrong prediction). W is computed from every row (each rank has the labels
    and neighbours), then only the rows held here are kept.
    """

    TENSORS = ("loss",)
    display_name = "Hard-Imb"
    config_class = HardImbConfig
    takes_seed = False
    uses_neighbors = True
    schedule_fields = ("num_epochs", "warmup_epochs")
    color = "#0072b2"
    display_rank = 2

    @staticmethod
    def static_label_weights(labels: torch.Tensor) -> torch.Tensor:
        """IRLbl_j = max_k |Y_k| / |Y_j| on the minority labels, 1 elsewhere (q,) float64."""
        positives = labels.to(torch.float64).sum(0)
        ratio = positives.max() / positives.clamp(min=1)
        return torch.where(minority_labels(labels), ratio, torch.ones_like(ratio))

    def __init__(
        self,
        labels,
        features=None,
        config: HardImbConfig | None = None,
        *,
        neighbors=None,
        device=None,
        shard=None,
        **options,
    ) -> None:
        labels = self._setup(labels, HardImbConfig, config, options, device, shard)
        self.quantizer = self.config.quantizer
        neighbors = self._neighbors(features, neighbors)
        if not bool(minority_labels(labels).any()):
            warnings.warn(
                "labels: no minority label (all labels equally frequent); Hard-Imb weights are all 1",
                RuntimeWarning,
                stacklevel=2,
            )
        self.imbalance = self.own_rows(imbalance_weights(labels, neighbors.to(self.device)))
        self.loss = torch.full((self.rows,), math.log(2.0), dtype=torch.float32, device=self.device)

    def _neighbors(self, features, neighbors) -> torch.Tensor:
        return resolve_neighbors(
            self.n,
            self.config.num_neighbors,
            features,
            neighbors,
            "Hard-Imb's K-NN local imbalance; pass the (n, d) training features or precomputed neighbors=",
            self.config.knn_backend,
        )

    def load_state_dict(self, state: dict) -> None:
        config = state.get("config") if isinstance(state, dict) else None
        if isinstance(config, dict) and "knn_backend" not in config:
            # Saved before knn_backend existed: those states had the field's default.
            state = {**state, "config": {**config, "knn_backend": HardImbConfig.knn_backend}}
        super().load_state_dict(state)

    def record(self, indices, probs, losses, epoch) -> None:
        self.loss[indices] = losses.mean(1).to(torch.float32)

    def weights(self) -> torch.Tensor:
        return self.imbalance * self.loss.to(torch.float64)
