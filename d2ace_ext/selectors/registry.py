"""Selectors by name, so a comparison changes one argument.

    selector = make_selector("ml_unc", train_y, num_epochs=30, warmup_epochs=3)
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..config import D2ACEConfig
from .active import ActiveConfig, ActiveSelector
from .balance import BalanceConfig, BalanceSelector
from .base import Selector
from .d2ace import D2ACESelector
from .dihcl import DIHCLConfig, DIHCLSelector
from .hard_imb import HardImbConfig, HardImbSelector
from .infobatch import InfoBatchConfig, InfoBatchSelector
from .ml_unc import MLUncConfig, MLUncSelector
from .random import RandomSelector
from .recent import RecentConfig, RecentSelector
from ..validation import check_labels


def _random(labels, features, device, shard=None, **options):
    if options:  # no per-instance state: a shard changes nothing
        raise TypeError(f"the 'random' selector takes no options, got {sorted(options)}")
    labels = check_labels(labels)
    return RandomSelector(labels.shape[0], labels.shape[1], device=device if device is not None else labels.device)


def _d2ace(labels, features, device, *, preset: str = "paper", config: D2ACEConfig | None = None, neighbors=None,
           shard=None, **overrides):
    if config is None:
        config = D2ACEConfig.preset(preset, **overrides)
    elif overrides:
        raise ValueError(f"pass either config= or option overrides for 'd2ace', not both (got {sorted(overrides)})")
    return D2ACESelector(labels, features, config, neighbors=neighbors, device=device, shard=shard)


def _without_features(cls):
    def build(labels, features, device, **options):
        return cls(labels, device=device, **options)
    return build


def _hard_imb(labels, features, device, **options):
    return HardImbSelector(labels, features, device=device, **options)


#: name -> builder(labels, features, device, **options) -> Selector
SELECTORS: dict[str, Callable[..., Selector]] = {
    "random": _random,
    "active": _without_features(ActiveSelector),
    "recent": _without_features(RecentSelector),
    "dihcl": _without_features(DIHCLSelector),
    "balance": _without_features(BalanceSelector),
    "hard_imb": _hard_imb,
    "ml_unc": _without_features(MLUncSelector),
    "d2ace": _d2ace,
    "infobatch": _without_features(InfoBatchSelector),
}


#: name -> (config class whose fields are its options, further keyword options)
_OPTIONS: dict[str, tuple[type | None, tuple[str, ...]]] = {
    "random": (None, ()),
    "active": (ActiveConfig, ()),
    "recent": (RecentConfig, ()),
    "dihcl": (DIHCLConfig, ("seed",)),
    "balance": (BalanceConfig, ("seed",)),
    "hard_imb": (HardImbConfig, ("neighbors",)),
    "ml_unc": (MLUncConfig, ()),
    "d2ace": (D2ACEConfig, ("preset", "neighbors", "ablation")),
    "infobatch": (InfoBatchConfig, ("seed",)),
}


def option_names(name: str) -> list[str]:
    """The keyword options ``make_selector(name, ...)`` accepts besides ``config=``: the
    fields of the selector's config, then its other options (seed, neighbors, preset)."""
    if name not in _OPTIONS:
        raise ValueError(f"unknown selector {name!r}; valid names: {', '.join(SELECTORS)}")
    config, extra = _OPTIONS[name]
    fields = [f.name for f in dataclasses.fields(config)] if config is not None else []
    return fields + list(extra)


def make_selector(name: str, labels: torch.Tensor, features: torch.Tensor | None = None, *,
                  device: torch.device | str | None = None, **options) -> Selector:
    """The selector called ``name`` over training labels (n, q) 0/1.

    features (n, d) are needed by "hard_imb" and "d2ace" (their K-NN; or pass
    ``neighbors=``); the others ignore them. ``options`` are the selector's config
    fields (e.g. ``num_epochs=30``), or ``config=`` a full config; "d2ace" also takes
    ``preset=``; "balance", "dihcl" and "infobatch" take ``seed=``.
    """
    if not isinstance(name, str) or name not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; valid names: {', '.join(SELECTORS)}")
    return SELECTORS[name](labels, features, device, **options)
