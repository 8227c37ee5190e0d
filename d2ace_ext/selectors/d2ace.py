"""The D2ACE selector: records visits, scores once per epoch, returns P (Eq. 16)."""

from __future__ import annotations

import warnings

import torch

from .. import ops
from ..config import LATER_FIELDS, PRESETS, STATE_DTYPES, D2ACEConfig
from ..neighbors import local_label_appearance, resolve_neighbors
from ..row_scoring import score_rows
from ..row_shard import RowShard, check_shard
from ..scoring import LabelContext, MetricScore, ScoreReport, schedule_values, score_epoch
from ..sparse_rows import SparseRows, row_pairs
from ..tensor_state import as_parts, config_difference, load_rows, saved_shard, with_later_defaults
from ..validation import check_labels
from ..visits import VisitState
from .base import FIXED, SHUFFLE, WEIGHTED, Selector


class D2ACESelector(Selector):
    """D2ACE over a fixed training set.

    labels: (n, q) 0/1 training labels. features: (n, d) the inputs the model sees
    (MinMax-scaled in the paper's protocol), used once for the K-NN of Eq. 10; needed
    unless ``config.num_neighbors == 0``. neighbors: (n, K) precomputed neighbour
    indices, instead of features: row i K distinct instances other than i. device: where the state lives (default: labels').
    shard: this rank's rows of a row-sharded state (None: every row): the visit state,
    the labels Y and the context Z then hold only those rows.
    """

    display_name = "D2ACE"
    config_class = D2ACEConfig
    takes_seed = False
    uses_neighbors = True
    schedule_fields = ("num_epochs", "warmup_epochs", "t_start", "t_end")
    presets = PRESETS
    checks_indices = True  # ops.record_step checks them on every path
    extra_options = ("ablation",)  # a variant of config.ABLATIONS, applied by D2ACEConfig.replace
    color = "#d55e00"  # vermillion: the method under study
    display_rank = 8

    def __init__(
        self,
        labels: torch.Tensor,
        features: torch.Tensor | None = None,
        config: D2ACEConfig | None = None,
        *,
        neighbors: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        shard: RowShard | None = None,
    ) -> None:
        labels = check_labels(labels)
        self.config = config if config is not None else D2ACEConfig()
        if not isinstance(self.config, D2ACEConfig):
            raise TypeError(f"config must be a D2ACEConfig, got {type(self.config).__name__}")
        self.n, self.q = labels.shape
        self.shard = check_shard(shard, self.n)
        self.device = torch.device(device) if device is not None else labels.device
        labels = labels.to(self.device)
        self.labels = self.own_rows(labels) != 0
        empty = int(((labels != 0).sum(0) == 0).sum())
        if empty:
            warnings.warn(
                f"labels: {empty} of {self.q} label columns have no positive instance; "
                "they take no part in the correlation term",
                RuntimeWarning,
                stacklevel=2,
            )
        neighbors = self._neighbors(features, neighbors)
        rows = None if self.shard is None else self.shard.rows(self.device)
        y = SparseRows.from_dense(self.labels)
        z = local_label_appearance(labels, neighbors, self.config.include_self, rows)
        self.context = LabelContext(y, z, row_pairs(y, y), row_pairs(y, z))
        self.visits = VisitState(
            self.labels.shape[0], self.q, self.config.window_size, self.device, STATE_DTYPES[self.config.state_dtype]
        )
        self.last_report: ScoreReport | None = None

    def _neighbors(self, features, neighbors) -> torch.Tensor | None:
        k = self.config.num_neighbors
        if k == 0:
            if neighbors is not None:
                raise ValueError(
                    "neighbors was given but num_neighbors = 0 (N(x_i) = {x_i}); "
                    "set num_neighbors to the neighbours' K or drop neighbors="
                )
            return None
        return resolve_neighbors(
            self.n,
            k,
            features,
            neighbors,
            f"the K-NN local context (num_neighbors={k}); pass the (n, d) training features, "
            "precomputed neighbors=, or num_neighbors=0",
            self.config.knn_backend,
        )

    def batch_mode(self, epoch: int) -> str:
        if epoch < self.config.warmup_epochs:
            return FIXED if self.config.warmup_order == "fixed" else SHUFFLE
        return WEIGHTED

    def record(self, indices, probs, losses, epoch) -> None:
        cfg = self.config
        self.visits.record(
            indices,
            probs,
            losses,
            epoch,
            per_epoch=cfg.window_unit == "epoch",
            flip_on=cfg.flip_on,
            flip_threshold=cfg.flip_threshold,
            lambda2=cfg.lambda2,
        )

    def record_outputs(self, indices, outputs, targets, kind, epoch) -> None:
        """One step through the fused record op, which checks its values (and the
        targets against the training labels) before changing anything."""
        cfg = self.config
        self.visits.record_outputs(
            indices,
            outputs,
            targets,
            epoch,
            from_logits=kind == "logits",
            per_epoch=cfg.window_unit == "epoch",
            flip_on=cfg.flip_on,
            flip_threshold=cfg.flip_threshold,
            lambda2=cfg.lambda2,
            labels=self.labels,
        )

    def score(self, epoch: int) -> ScoreReport:
        """Score every instance from the records so far, for epoch ``epoch``: the fused
        ops (which run natively or as their pure-PyTorch definitions, as ops decides), or
        the pure-PyTorch scorer for the label-weight ablations G and I (the fused op
        computes v = exp((μ + σ)/2) inside and returns no U or H to reweight). A
        row-sharded or compact state is scored in passes over its rows
        (:mod:`~d2ace_ext.row_scoring`), a collective call when sharded over several ranks."""
        if self.shard is not None or self.visits.window.dtype != torch.float32:
            self.last_report = score_rows(
                self.visits, self.context, self.config, epoch, self.shard or RowShard.whole(self.n)
            )
        elif self.config.label_weight_form == "exponential":
            self.last_report = self._score_fused(epoch)
        else:
            unc, hard = self.visits.metrics(self.config.lambda1, self.config.loss_transform)
            self.last_report = score_epoch(unc, hard, self.context, self.config, epoch)
        _warn_if_a_metric_went_uniform(self.last_report)
        return self.last_report

    def _score_fused(self, epoch: int) -> ScoreReport:
        cfg, visits = self.config, self.visits
        weights, correlation, delta, phi, weight_range = ops.score_visits(
            visits.window,
            visits.pushes,
            visits.loss,
            visits.flip_average,
            self.context,
            lambda1=cfg.lambda1,
            loss_transform=cfg.loss_transform,
            norm_eps=cfg.norm_eps,
            row_normalize=cfg.row_normalize_correlation,
            label_weights_in_phi=cfg.label_weights_in_phi,
            workspace=visits.workspace(),
            index_errors=visits.index_errors,
        )
        if not cfg.correlation_enhancement:  # ablation H: w = δ; the kernel's φ and C are dropped
            phi, correlation, weight_range = torch.zeros_like(phi), torch.zeros_like(correlation), None
        pressure, p_beta = schedule_values(epoch, cfg)
        per_metric, mixed = ops.quantized_mixture(delta + phi, pressure, p_beta, cfg.quant_index_min, weight_range)
        scores = [MetricScore(weights[m], correlation[m], delta[m], phi[m], per_metric[m]) for m in range(2)]
        return ScoreReport(epoch, pressure, p_beta, scores[0], scores[1], mixed)

    def probabilities(self, epoch: int) -> torch.Tensor:
        return self.score(epoch).probabilities

    def state_dict(self) -> dict:
        state = {"config": self.config.to_dict(), "visits": self.visits.state_dict()}
        if self.shard is not None:
            state["shard"] = self.shard.to_dict()
        return state

    def load_state_dict(self, state) -> None:
        """Restore one saved state, or a list of every rank's saved states of a sharded
        run (re-sharding them to the rows held here); checks everything first."""
        what = "D2ACESelector state"
        parts = as_parts(state, what)
        for part in parts:
            if "visits" not in part:
                raise KeyError(f"{what} is missing 'visits'")
            saved = with_later_defaults(part.get("config"), self.config, LATER_FIELDS)
            if saved != self.config.to_dict():
                raise ValueError(
                    f"state_dict was saved with a different D2ACEConfig: "
                    f"{config_difference(saved, self.config.to_dict())}; build the sampler with the saved run's config"
                )
        load_rows(
            self.visits,
            VisitState.TENSORS,
            [(part["visits"], saved_shard(part, what)) for part in parts],
            self.shard,
            "visit state",
        )


def _warn_if_a_metric_went_uniform(report: ScoreReport) -> None:
    """Say at run time what docs/fidelity.md says: a label weight v_A that is not finite
    (an infinite recorded loss, from a logit of ±inf on the wrong side of its label, or
    one so large that exp((μ + σ)/2) overflows) makes that metric's distribution uniform
    for the epoch, so the hardest instances lose their priority instead of gaining it."""
    for name, metric in (("uncertainty", report.uncertainty), ("hardness", report.hardness)):
        bad = int((~torch.isfinite(metric.label_weights)).sum())
        if bad:
            warnings.warn(
                f"D2ACE {name}: {bad} of {metric.label_weights.numel()} label weights are not finite "
                f"(an infinite or overflowing recorded loss, e.g. a logit of ±inf on the wrong side "
                f"of its label), so epoch {report.epoch}'s {name} sampling is uniform; check the "
                "model's outputs for overflow (float16 logits saturate at ±65,504)",
                RuntimeWarning,
                stacklevel=3,
            )
