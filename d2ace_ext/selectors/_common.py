"""What the quantiser-based baselines share: warm-up, the pressure schedule, the
quantisers of Eqs. 13-14, and checked state (de)serialisation.

Active, Recent, Hard-Imb and ML-Unc each compute one instance weight w (n,) per epoch;
the helpers here turn it into sampling probabilities P (n,) for a WEIGHTED epoch. Under
a row-sharded state each rank computes w for its own rows and the n weights are
gathered, so every rank quantises the same w with the same code as one process does.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass

import torch

from .. import functional
from ..row_shard import check_shard
from ..tensor_state import as_parts, config_difference, load_rows, saved_shard, saved_tensors, with_later_defaults
from ..validation import check_labels, check_rule, is_int, is_real  # noqa: F401 (re-exported)
from .base import SHUFFLE, WEIGHTED, Selector

PRESSURE_SCHEDULES = ("paper", "reference", "rising")


def check_choice(owner: str, name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{owner}.{name} must be one of {tuple(allowed)}, got {value!r}")


@dataclass(frozen=True)
class QuantizedConfig:
    """The schedule shared by every quantiser-based selector (Appendix D.1).

    Epochs count from 0: warm-up is epochs 0 .. warmup_epochs - 1 (shuffled passes), the
    first selection epoch is ``warmup_epochs`` and the last is ``num_epochs - 1``.
    ``pressure_schedule``: "paper" (Eq. 21, s from ``initial_pressure`` down to 1),
    "reference" (D2ACE's published code), or "rising" (the ML-Unc notebook's swapped
    arguments: s from 1 up to ``initial_pressure``; reproduces a bug, never a default).
    """

    num_epochs: int = 100
    warmup_epochs: int = 10
    initial_pressure: float = 100.0
    pressure_schedule: str = "paper"

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        owner = type(self).__name__
        check_rule(
            owner, "num_epochs", self.num_epochs, is_int(self.num_epochs) and self.num_epochs >= 1, "an integer >= 1"
        )
        check_rule(
            owner,
            "warmup_epochs",
            self.warmup_epochs,
            is_int(self.warmup_epochs) and self.warmup_epochs >= 0,
            "an integer >= 0",
        )
        check_rule(
            owner,
            "initial_pressure",
            self.initial_pressure,
            is_real(self.initial_pressure) and self.initial_pressure >= 1.0,
            "a finite number >= 1",
        )
        check_choice(owner, "pressure_schedule", self.pressure_schedule, PRESSURE_SCHEDULES)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_config(cls, config, options: dict):
    """``config`` if given (of type ``cls``), else ``cls(**options)``; never both."""
    if config is not None:
        if options:
            raise ValueError(f"pass either config= or keyword options, not both (got {sorted(options)})")
        if not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
        return config
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no option(s) {unknown}; valid options: {sorted(names)}")
    return cls(**options)


def pressure(config: QuantizedConfig, epoch: int) -> float:
    """Selection pressure s for epoch ``epoch`` (Eq. 21 under "paper")."""
    if config.pressure_schedule == "rising":
        # The ML-Unc notebook passes (e_end, e0) swapped: s = 1 at the first selection
        # epoch rising to s0 at the last. Kept only to reproduce that run.
        span = config.num_epochs - 1 - config.warmup_epochs
        if epoch < config.warmup_epochs or span <= 0:
            return 1.0
        progress = min(1.0, (epoch - config.warmup_epochs) / span)
        return float(config.initial_pressure) ** progress
    return functional.selection_pressure(
        epoch, config.warmup_epochs, config.num_epochs, config.initial_pressure, config.pressure_schedule
    )


def _uniform(weights: torch.Tensor) -> torch.Tensor:
    return torch.full_like(weights, 1.0 / weights.numel())


def rank_probabilities(weights: torch.Tensor, s: float) -> torch.Tensor:
    """The rank quantiser of online batch selection (Loshchilov & Hutter 2016): P_i ∝
    s^(-r_i/n), r_i = number of weights above w_i. (Song et al. 2020, whom the D2ACE paper
    cites for Eq. 13, quantise the value instead: Q of Eq. 13 in place of the rank.)

    weights (n,) float64 -> (n,). Tied weights share a rank, so they get equal P.
    """
    n = weights.numel()
    ordered = torch.sort(-weights).values
    rank = torch.searchsorted(ordered, -weights, right=False).to(weights.dtype)
    if s == 1.0:
        return _uniform(weights)
    return torch.softmax(-rank * (math.log(s) / n), dim=0)


def value_probabilities(weights: torch.Tensor, s: float) -> torch.Tensor:
    """Hard-Imb's value quantiser: Q_i = ⌈w_i/Δ⌉, Δ = max(w)/n, P_i ∝ s^(Q_i/n).

    weights (n,) float64, >= 0 -> (n,). Uniform when max(w) = 0 or some w is NaN. Unlike
    Eq. 13, w is not min-max normalised, so max P / min P = s^((Q_max - Q_min)/n) <= s.
    An infinite w (Hard-Imb: a saturated wrong prediction's BCE) takes the limit of a
    growing w: Q = n for it, 1 for every finite w > 0, 0 for w = 0 (it was uniform, so the
    hardest instance switched the selection off).
    """
    n = weights.numel()
    high = weights.max()
    if s == 1.0 or bool(torch.isnan(high)) or float(high) <= 0.0:
        return _uniform(weights)
    if math.isinf(float(high)):
        index = torch.where(torch.isinf(weights), float(n), (weights > 0).to(weights.dtype))
    else:
        index = torch.ceil(weights / (high / n)).clamp(0, n)
    return torch.softmax(index * (math.log(s) / n), dim=0)


def quantize(weights: torch.Tensor, s: float, quantizer: str) -> torch.Tensor:
    """P (n,) from instance weights (n,) with the named quantiser: "index" (Eqs. 13-14,
    the paper's shared choice), "rank" or "value". An infinite weight (Hard-Imb's BCE of a
    saturated wrong prediction) is the top one under every quantiser."""
    if quantizer == "index":
        top = torch.isposinf(weights)
        if bool(top.any()) and not bool(top.all()) and not bool(torch.isnan(weights).any()):
            # the limit of a growing weight under Eq. 13: w̃ = 1 (Q = 0) for it and w̃ = 0
            # (Q = n) for every finite one; Eq. 13's tie rule would make P uniform instead
            if s == 1.0:
                return _uniform(weights)
            logits = torch.where(top, torch.zeros_like(weights), torch.full_like(weights, -math.log(s)))
            return torch.softmax(logits, dim=0)
        return functional.quantized_probabilities(weights, s)
    if quantizer == "rank":
        return rank_probabilities(weights, s)
    if quantizer == "value":
        return value_probabilities(weights, s)
    raise ValueError(f"unknown quantizer {quantizer!r}")


class QuantizedSelector(Selector):
    """Warm-up of shuffled epochs, then P = quantize(w, s(epoch)) from :meth:`weights`."""

    config: QuantizedConfig
    quantizer: str = "index"
    #: names of the state tensors, saved and restored by state_dict / load_state_dict
    TENSORS: tuple[str, ...] = ()

    def _setup(self, labels, config_cls, config, options, device, shard=None) -> torch.Tensor:
        """Checks and stores labels, config, n, q, device and shard; ``self.labels`` holds
        the rows held here. Returns the whole label matrix (n, q) on ``device``."""
        labels = check_labels(labels)
        self.config = make_config(config_cls, config, options)
        self.n, self.q = labels.shape
        self.shard = check_shard(shard, self.n)
        self.device = torch.device(device) if device is not None else labels.device
        labels = labels.to(self.device)
        self.labels = self.own_rows(labels) != 0
        return labels

    @property
    def rows(self) -> int:
        """Rows of per-instance state held here (n unless sharded)."""
        return self.n if self.shard is None else self.shard.size

    def batch_mode(self, epoch: int) -> str:
        return SHUFFLE if epoch < self.config.warmup_epochs else WEIGHTED

    @abc.abstractmethod
    def weights(self) -> torch.Tensor:
        """Instance weights w (rows,) float64 of the rows held here, from the records so
        far (larger = preferred); all n unless sharded."""

    def probabilities(self, epoch: int) -> torch.Tensor:
        return quantize(self.all_rows(self.weights()), pressure(self.config, epoch), self.quantizer)

    def state_dict(self) -> dict:
        return tensor_state(self, self.TENSORS)

    def load_state_dict(self, state) -> None:
        load_tensor_state(self, state, self.TENSORS)


def tensor_state(owner, names) -> dict:
    """config, n, q and copies of the named per-instance tensors (of the rows held
    here), with ``"shard"`` when the state is sharded."""
    state = {"config": owner.config.to_dict(), "n": owner.n, "q": owner.q}
    state.update(saved_tensors(owner, names))
    if owner.shard is not None:
        state["shard"] = owner.shard.to_dict()
    return state


def load_tensor_state(owner, state, names, fields: dict | None = None) -> None:
    """Check config, n, q, the named ``fields`` (e.g. {"seed": 3}) and every tensor's
    shape, dtype and values, then copy all (:func:`~d2ace_ext.tensor_state.load_rows`).
    ``state``: one saved state, or a list of every rank's of a sharded one. Config fields
    named in the config class's ``LATER_FIELDS`` take their defaults where a state saved
    before they existed lacks them."""
    kind = type(owner).__name__
    what = f"{kind} state"
    parts = as_parts(state, what)
    later = getattr(type(owner.config), "LATER_FIELDS", ())
    for part in parts:
        saved = with_later_defaults(part.get("config"), owner.config, later)
        if saved != owner.config.to_dict():
            raise ValueError(
                f"{what} was saved with a different config: {config_difference(saved, owner.config.to_dict())}; "
                "build the selector with the saved run's options"
            )
        if part.get("n") != owner.n or part.get("q") != owner.q:
            raise ValueError(
                f"{what} is for n={part.get('n')!r}, q={part.get('q')!r}; this one has n={owner.n}, q={owner.q}"
            )
        for key, mine in (fields or {}).items():
            if part.get(key) != mine:
                raise ValueError(f"{kind} state has {key}={part.get(key)!r}, this one has {mine!r}")
    load_rows(owner, names, [(part, saved_shard(part, what)) for part in parts], owner.shard, what)
