"""Selectors by name, so a comparison changes one argument.

    selector = make_selector("ml_unc", train_y, num_epochs=30, warmup_epochs=3)

Each selector describes itself in class attributes (:class:`~d2ace_ext.selectors.base.Selector`:
display name, config class, seed, K-NN, the epoch counts a run scales, presets, colour,
rank); this module maps names to classes, checks that description when a selector is
registered, and answers every question about a selector by name from it. Adding a
selector is its own file plus one :func:`register_selector` line here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Callable

import torch

from ..config import D2ACEConfig
from ..validation import check_labels
from .active import ActiveSelector
from .balance import BalanceSelector
from .base import Selector
from .d2ace import D2ACESelector
from .dihcl import DIHCLSelector
from .hard_imb import HardImbSelector
from .infobatch import InfoBatchSelector
from .ml_unc import MLUncSelector
from .random import RandomSelector
from .recent import RecentSelector

#: The metadata every registered selector states itself (no default on the base class).
REQUIRED_METADATA = ("display_name", "config_class", "takes_seed", "uses_neighbors", "schedule_fields")

#: name -> builder(labels, features, device, **options) -> Selector
SELECTORS: dict[str, Callable[..., Selector]] = {}
#: name -> the selector's class, whose attributes describe it
SELECTOR_CLASSES: dict[str, type[Selector]] = {}


def _is_epoch_count(field_name: str) -> bool:
    return field_name == "num_epochs" or field_name.endswith("_epochs")


def check_metadata(cls: type) -> None:
    """TypeError naming every metadata attribute ``cls`` leaves out or states wrongly:
    the five of :data:`REQUIRED_METADATA`, and their agreement with the class itself
    (``seed=`` in the constructor, ``num_neighbors`` in the config, every epoch-count
    field of the config among ``schedule_fields``)."""
    if not (isinstance(cls, type) and issubclass(cls, Selector)):
        raise TypeError(f"a selector must be a subclass of Selector, got {cls!r}")
    name = cls.__name__
    missing = [attribute for attribute in REQUIRED_METADATA if not hasattr(cls, attribute)]
    if missing:
        raise TypeError(
            f"{name} does not state its metadata {', '.join(missing)}: set each as a class attribute "
            "(see selectors/base.py, e.g. schedule_fields = ('num_epochs', 'warmup_epochs') for a "
            "selector whose schedule scales with the run's length, () for none)"
        )
    problems = []
    if not isinstance(cls.display_name, str) or not cls.display_name:
        problems.append(f"display_name must be a non-empty str, got {cls.display_name!r}")
    config = cls.config_class
    if config is not None and not dataclasses.is_dataclass(config):
        problems.append(f"config_class must be a dataclass or None, got {config!r}")
    fields = [f.name for f in dataclasses.fields(config)] if dataclasses.is_dataclass(config) else []
    for flag in ("takes_seed", "uses_neighbors"):
        if not isinstance(getattr(cls, flag), bool):
            problems.append(f"{flag} must be True or False, got {getattr(cls, flag)!r}")
    if cls.takes_seed is True and "seed" not in inspect.signature(cls).parameters:
        problems.append("takes_seed is True but its constructor has no seed= parameter")
    if cls.uses_neighbors is True and "num_neighbors" not in fields:
        problems.append("uses_neighbors is True but its config_class has no num_neighbors field")
    schedule = cls.schedule_fields
    if not isinstance(schedule, tuple) or not all(isinstance(f, str) for f in schedule):
        problems.append(f"schedule_fields must be a tuple of config field names, got {schedule!r}")
    else:
        unknown = [f for f in schedule if f not in fields]
        if unknown:
            problems.append(f"schedule_fields names {unknown}, not fields of its config_class")
        if schedule and schedule[0] != "num_epochs":
            problems.append(f"schedule_fields must start with 'num_epochs' (the run's length), got {schedule!r}")
        left_out = [f for f in fields if _is_epoch_count(f) and f not in schedule]
        if left_out:
            problems.append(
                f"its config counts epochs in {left_out} but schedule_fields leaves them out, so runs "
                "of another length would keep the defaults' schedule"
            )
    if cls.presets is not None and not (isinstance(cls.presets, Mapping) and cls.presets):
        problems.append(f"presets must be a non-empty mapping of name to config, or None, got {cls.presets!r}")
    if problems:
        raise TypeError(f"{name} metadata: " + "; ".join(problems))


def _default_builder(cls: type[Selector]) -> Callable[..., Selector]:
    """``cls(labels[, features], device=device, **options)``: features only for a K-NN selector."""

    def build(labels, features, device, **options):
        if cls.uses_neighbors:
            return cls(labels, features, device=device, **options)
        return cls(labels, device=device, **options)

    return build


def register_selector(name: str, cls: type[Selector], build: Callable[..., Selector] | None = None) -> None:
    """Make selector ``cls`` available as ``name`` to ``make_selector``, ``make_sampler``
    and the harness. ``build(labels, features, device, **options)`` constructs it; the
    default calls ``cls(labels, device=device, **options)`` (``features`` second when
    ``cls.uses_neighbors``). Raises TypeError if ``cls`` lacks its metadata
    (:func:`check_metadata`), ValueError if ``name`` is taken."""
    if not isinstance(name, str) or not name or name != name.strip().lower().replace("-", "_"):
        raise ValueError(f"a selector name must be lower case with underscores (as results files key it), got {name!r}")
    if name in SELECTORS:
        raise ValueError(f"a selector called {name!r} is already registered ({SELECTOR_CLASSES[name].__name__})")
    check_metadata(cls)
    SELECTORS[name] = build if build is not None else _default_builder(cls)
    SELECTOR_CLASSES[name] = cls


def unregister_selector(name: str) -> None:
    """Remove ``name`` (a selector registered for a test or a session)."""
    SELECTORS.pop(name, None)
    SELECTOR_CLASSES.pop(name, None)


def selector_class(name: str) -> type[Selector]:
    """The class registered as ``name``; ValueError listing the valid names otherwise."""
    if not isinstance(name, str) or name not in SELECTOR_CLASSES:
        raise ValueError(f"unknown selector {name!r}; valid names: {', '.join(SELECTORS)}")
    return SELECTOR_CLASSES[name]


def default_config(name: str, preset: str = "paper"):
    """The configuration the selector runs with when given no options: its preset
    ``preset`` if it has presets (ignored otherwise), else its config class's defaults;
    None for a selector without options."""
    cls = selector_class(name)
    if cls.presets is not None:
        if preset not in cls.presets:
            raise ValueError(f"preset must be one of {sorted(cls.presets)}, got {preset!r}")
        return cls.presets[preset]
    return cls.config_class() if cls.config_class is not None else None


def option_names(name: str) -> list[str]:
    """The keyword options ``make_selector(name, ...)`` accepts besides ``config=``: the
    fields of the selector's config, then ``seed``, ``preset``, ``neighbors`` where it
    takes them, then its ``extra_options``."""
    cls = selector_class(name)
    fields = [f.name for f in dataclasses.fields(cls.config_class)] if cls.config_class is not None else []
    taken = (("seed", cls.takes_seed), ("preset", cls.presets is not None), ("neighbors", cls.uses_neighbors))
    return fields + [option for option, takes in taken if takes] + list(cls.extra_options)


def display_name(name: str) -> str:
    """The paper's spelling of a selector ("hard_imb" -> "Hard-Imb"); an unregistered
    name is returned as it is (results of a selector since removed still print)."""
    cls = SELECTOR_CLASSES.get(name)
    return cls.display_name if cls is not None else name


def has_presets(name: str) -> bool:
    """Whether runs of selector ``name`` differ by preset (D2ACE); False for an unknown name."""
    cls = SELECTOR_CLASSES.get(name)
    return cls is not None and cls.presets is not None


class SelectorFacts(Mapping):
    """A live read-only view {name: one metadata attribute} over the registered
    selectors, in registry order (``SelectorFacts("display_name")["hard_imb"]`` is
    "Hard-Imb"), so no second table of names can fall behind the registry."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __getitem__(self, name: str):
        if name not in SELECTOR_CLASSES:
            raise KeyError(name)
        return getattr(SELECTOR_CLASSES[name], self.attribute)

    def __iter__(self):
        return iter(list(SELECTOR_CLASSES))

    def __len__(self) -> int:
        return len(SELECTOR_CLASSES)

    def __repr__(self) -> str:
        return f"SelectorFacts({self.attribute!r}: {dict(self)!r})"


def _random(labels, features, device, shard=None, **options):
    if options:  # no per-instance state: a shard changes nothing
        raise TypeError(f"the 'random' selector takes no options, got {sorted(options)}")
    labels = check_labels(labels)
    return RandomSelector(labels.shape[0], labels.shape[1], device=device if device is not None else labels.device)


def _d2ace(
    labels,
    features,
    device,
    *,
    preset: str = "paper",
    config: D2ACEConfig | None = None,
    neighbors=None,
    shard=None,
    **overrides,
):
    if config is None:
        config = D2ACEConfig.preset(preset, **overrides)
    elif overrides:
        raise ValueError(f"pass either config= or option overrides for 'd2ace', not both (got {sorted(overrides)})")
    return D2ACESelector(labels, features, config, neighbors=neighbors, device=device, shard=shard)


register_selector("random", RandomSelector, _random)
register_selector("active", ActiveSelector)
register_selector("recent", RecentSelector)
register_selector("dihcl", DIHCLSelector)
register_selector("balance", BalanceSelector)
register_selector("hard_imb", HardImbSelector)
register_selector("ml_unc", MLUncSelector)
register_selector("d2ace", D2ACESelector, _d2ace)
register_selector("infobatch", InfoBatchSelector)


def make_selector(
    name: str,
    labels: torch.Tensor,
    features: torch.Tensor | None = None,
    *,
    device: torch.device | str | None = None,
    **options,
) -> Selector:
    """The selector called ``name`` over training labels (n, q) 0/1.

    features (n, d) are needed by the selectors with a K-NN (``uses_neighbors``:
    "hard_imb", "d2ace"; or pass ``neighbors=``); the others ignore them. ``options``
    are the selector's config fields (e.g. ``num_epochs=30``), or ``config=`` a full
    config, and :func:`option_names` lists them all ("d2ace" also takes ``preset=``;
    the selectors with ``takes_seed`` take ``seed=``).
    """
    if not isinstance(name, str) or name not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; valid names: {', '.join(SELECTORS)}")
    return SELECTORS[name](labels, features, device, **options)
