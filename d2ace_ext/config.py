"""Configuration of the D2ACE selector, with the ``paper`` and ``reference`` presets and
the paper's ablations (Figure 5) as named variants.

Each field that differs between the presets corresponds to a row of
``docs/fidelity.md`` (and of the published-code notes it was written from); each
ablation is a set of field values, listed in :data:`ABLATIONS` and in the same document.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .neighbors import KNN_BACKENDS
from .validation import check_rule, is_int, is_real

#: ``state_dtype`` names: the dtype of D2ACE's window, loss and flip tensors (2 bytes a
#: value instead of 4 for the 16-bit ones; arithmetic stays float32).
STATE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

_CHOICES = {
    "window_unit": ("epoch", "visit"),
    "flip_on": ("prediction", "probability"),
    "loss_transform": ("identity", "two_minus_exp"),
    "pressure_schedule": ("paper", "reference"),
    "schedule_epoch": ("current", "finished"),
    "warmup_order": ("shuffle", "fixed"),
    "label_weight_form": ("exponential", "linear", "none"),
    "knn_backend": KNN_BACKENDS,
    "state_dtype": tuple(STATE_DTYPES),
}


@dataclass(frozen=True)
class D2ACEConfig:
    """All knobs of D2ACE. The defaults are the ``paper`` preset (tabular data).

    Epochs count from 0; ``num_epochs`` is the paper's T and ``warmup_epochs`` its T_w.
    """

    # Eqs. 1-3: uncertainty.
    window_size: int = 5  # n_t
    window_unit: str = "epoch"  # one entry per epoch, or one per visit
    lambda1: float = 0.5
    # Eqs. 4-5: hardness.
    lambda2: float = 0.7
    flip_on: str = "prediction"  # 0/1 predictions, or probabilities
    flip_threshold: float = 0.5
    loss_transform: str = "identity"  # ℓ, or 2 - e^(-ℓ)
    # Eq. 7: label weights v = exp((μ + σ)/2); "linear": (μ + σ)/2; "none": v = 1 (ablations I, G).
    label_weight_form: str = "exponential"
    # Eqs. 9-11: correlation with local context; False sets φ = 0, so w = δ (ablation H).
    correlation_enhancement: bool = True
    num_neighbors: int = 6  # K; 0 means N(x_i) = {x_i}
    include_self: bool = False  # add x_i itself to its K neighbours
    knn_backend: str = "auto"  # the K-NN search: exact, FAISS, or by n (d2ace_ext.neighbors)
    norm_eps: float = 0.0  # added to the column norms of M
    row_normalize_correlation: bool = False  # C̃_jk = C_jk / (Σ_k C_jk + 1e-8), used as C̃ᵀ
    label_weights_in_phi: bool = False  # φ_i = Σ_j Y_ij A_ij v_j (Z C)_ij
    # Eqs. 13-14, 21: quantised sampling.
    quant_index_min: int = 0  # lowest quantisation index Q
    initial_pressure: float = 100.0  # s at the first selection epoch
    pressure_schedule: str = "paper"
    # Eqs. 16-17: mixture.
    p_beta_start: float = 0.7
    p_beta_end: float = 0.3
    t_start: int = 30
    t_end: int = 70
    schedule_epoch: str = "current"  # epoch fed to Eqs. 17 and 21
    # Training length and warm-up.
    num_epochs: int = 100
    warmup_epochs: int = 10
    warmup_order: str = "shuffle"
    # Storage of the per-instance records (not part of the method): "float32", or
    # "float16" / "bfloat16" for a compact state (the pure-PyTorch record and scoring paths).
    state_dtype: str = "float32"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"D2ACEConfig.{name} must be one of {allowed}, got {value!r}")
        for name in ("include_self", "row_normalize_correlation", "label_weights_in_phi", "correlation_enhancement"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"D2ACEConfig.{name} must be True or False, got {getattr(self, name)!r}")
        # (name, kind, test, rule): every integer field must be a Python int (not a bool
        # or a float such as 2.5), every real one a finite int or float.
        checks = [
            ("window_size", is_int, lambda v: v >= 2, "an integer >= 2 (Eq. 2 needs two entries)"),
            ("lambda1", is_real, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
            ("lambda2", is_real, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
            ("flip_threshold", is_real, lambda v: 0.0 < v < 1.0, "a number in (0, 1)"),
            ("num_neighbors", is_int, lambda v: v >= 0, "an integer >= 0"),
            ("norm_eps", is_real, lambda v: v >= 0.0, "a finite number >= 0"),
            ("quant_index_min", is_int, lambda v: v in (0, 1), "the integer 0 or 1"),
            ("initial_pressure", is_real, lambda v: v >= 1.0, "a finite number >= 1"),
            ("p_beta_start", is_real, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
            ("p_beta_end", is_real, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
            ("t_start", is_int, lambda v: True, "an integer"),
            ("t_end", is_int, lambda v: v >= self.t_start, "an integer >= t_start"),
            ("num_epochs", is_int, lambda v: v >= 1, "an integer >= 1"),
            ("warmup_epochs", is_int, lambda v: v >= 0, "an integer >= 0"),
        ]
        for name, kind, test, rule in checks:
            value = getattr(self, name)
            check_rule("D2ACEConfig", name, value, kind(value) and test(value), rule)

    @classmethod
    def preset(cls, name: str, **overrides) -> "D2ACEConfig":
        """``paper`` (the defaults) or ``reference`` (the published code), with overrides
        (``ablation=`` among them names a variant of :data:`ABLATIONS`, as in :meth:`replace`)."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return PRESETS[name].replace(**overrides)

    def replace(self, *, ablation: str | None = None, **changes) -> "D2ACEConfig":
        """A copy with ``changes``; ``ablation`` (e.g. ``"no_correlation"``) then applies that
        variant, so harness options such as ``{"ablation": ...}`` pass through here."""
        if ablation is None:
            return dataclasses.replace(self, **changes)
        clash = sorted(set(changes) & set(_ablation_fields(ablation)))
        if clash:
            raise ValueError(f"ablation {ablation!r} sets {clash} itself; drop them from the other options")
        return dataclasses.replace(self, **changes).ablate(ablation)

    def ablate(self, name: str) -> "D2ACEConfig":
        """This configuration with one component of Figure 5 removed or changed: one of
        :data:`ABLATIONS` (``docs/fidelity.md`` has the table). Everything else is kept."""
        return dataclasses.replace(self, **_ablation_fields(name))

    def scaled_to(self, num_epochs: int) -> "D2ACEConfig":
        """The same schedule stretched or shrunk to ``num_epochs`` (warm-up, t_start, t_end)."""
        ratio = num_epochs / self.num_epochs
        return dataclasses.replace(
            self,
            num_epochs=num_epochs,
            warmup_epochs=round(self.warmup_epochs * ratio),
            t_start=round(self.t_start * ratio),
            t_end=round(self.t_end * ratio),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Fields added after D2ACE states were first saved: a saved config without them had
#: their defaults (the full method), so ``D2ACESelector.load_state_dict`` fills them in.
LATER_FIELDS = ("label_weight_form", "correlation_enhancement", "knn_backend", "state_dtype")

#: The paper's ablations (Figure 5, letters B-I) as the fields each one sets. The paper does
#: not print the fixed mixing coefficients of D-F: 0.7, 0.5 and 0.3 are p_β's start, middle
#: and end values under the full method.
ABLATIONS: dict[str, dict] = {
    "hardness_only": {"p_beta_start": 0.0, "p_beta_end": 0.0},  # B: P = P_H
    "uncertainty_only": {"p_beta_start": 1.0, "p_beta_end": 1.0},  # C: P = P_U
    "fixed_mix_0.7": {"p_beta_start": 0.7, "p_beta_end": 0.7},  # D
    "fixed_mix_0.5": {"p_beta_start": 0.5, "p_beta_end": 0.5},  # E
    "fixed_mix_0.3": {"p_beta_start": 0.3, "p_beta_end": 0.3},  # F
    "no_label_weights": {"label_weight_form": "none"},  # G: v_A = 1
    "no_correlation": {"correlation_enhancement": False},  # H: φ_A = 0
    "linear_label_weights": {"label_weight_form": "linear"},  # I: v_A = (μ + σ)/2
}


def _ablation_fields(name) -> dict:
    if not isinstance(name, str) or name not in ABLATIONS:
        raise ValueError(f"ablation must be one of {', '.join(ABLATIONS)}, got {name!r}")
    return ABLATIONS[name]


PRESETS = {
    "paper": D2ACEConfig(),
    "reference": D2ACEConfig(
        window_unit="visit",
        flip_on="probability",
        loss_transform="two_minus_exp",
        include_self=True,
        norm_eps=1e-8,
        row_normalize_correlation=True,
        label_weights_in_phi=True,
        quant_index_min=1,
        initial_pressure=8.0,
        pressure_schedule="reference",
        t_start=10,
        schedule_epoch="finished",
        warmup_order="fixed",
    ),
}
