"""Model names -> classes, and the one constructor the harness and the demo call."""

from __future__ import annotations

import inspect

from .base import MultiLabelModel
from .clif import CLIF
from .clif_published import PublishedCLIF
from .dela import DELA
from .dela_published import PublishedDELA
from .mlp import MLP
from .paca import PACA
from .paca_published import PublishedPACA

MODELS: dict[str, type[MultiLabelModel]] = {"mlp": MLP, "clif": CLIF, "dela": DELA, "paca": PACA}
# Image models (ResNet backbone + head; in_features = 3 image channels, or the feature
# width with backbone="none"). Imported lazily by name: torchvision is optional.
IMAGE_MODELS = {"mlgcn": ("mlgcn", "MLGCN"), "hst": ("hst", "HST")}


def _image_model(name: str) -> type[MultiLabelModel]:
    import importlib

    module, cls = IMAGE_MODELS[name]
    return getattr(importlib.import_module(f".{module}", __package__), cls)


#: option ``variant=``: "paper" (default, the model papers' reading, ``MODELS``) or
#: "published" (as the D2ACE authors' code iunanyou/D2ACE builds the model).
VARIANTS: dict[str, dict[str, type[MultiLabelModel]]] = {
    "clif": {"published": PublishedCLIF},
    "dela": {"published": PublishedDELA},
    "paca": {"published": PublishedPACA},
}


def _options(cls: type) -> list[str]:
    """The keyword options a model takes beyond (in_features, num_labels, train_labels)."""
    names = list(inspect.signature(cls.__init__).parameters)[1:]
    return [n for n in names if n not in ("in_features", "num_labels", "train_labels")]


def option_names(name: str, variant: str = "paper") -> list[str]:
    """The keyword options ``make_model(name, ...)`` accepts for ``variant`` (with ``variant``
    itself where the model has other variants); unknown names or variants raise ValueError."""
    cls = MODELS.get(name) or (_image_model(name) if name in IMAGE_MODELS else None)
    if cls is None:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted([*MODELS, *IMAGE_MODELS]))}")
    if variant != "paper":
        cls = VARIANTS.get(name, {}).get(variant)
        if cls is None:
            raise ValueError(
                f"model {name!r} has no variant {variant!r}; valid variants: "
                f"{', '.join(['paper', *VARIANTS.get(name, {})])}"
            )
    return _options(cls) + (["variant"] if name in VARIANTS else [])


def make_model(name: str, in_features: int, num_labels: int, *, train_labels=None, **options) -> MultiLabelModel:
    """Build model ``name`` for features (b, in_features) and ``num_labels`` labels.

    ``train_labels`` (n, q) 0/1 go to the models that use them (CLIF's label graph) and
    are ignored by the others, so callers can always pass them. ``variant="published"``
    builds the model as the D2ACE authors' code does (``VARIANTS``). Unknown names or
    variants raise ValueError listing the valid ones; unknown options raise TypeError.
    """
    cls = MODELS.get(name) or (_image_model(name) if name in IMAGE_MODELS else None)
    if cls is None:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted([*MODELS, *IMAGE_MODELS]))}")
    variant = options.pop("variant", "paper")
    if variant != "paper":
        cls = VARIANTS.get(name, {}).get(variant)
        if cls is None:
            valid = ", ".join(["paper", *VARIANTS.get(name, {})])
            raise ValueError(f"model {name!r} has no variant {variant!r}; valid variants: {valid}")
    valid = _options(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"model {name!r} got unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid) or 'none'}"
        )
    if "train_labels" in inspect.signature(cls.__init__).parameters:
        options["train_labels"] = train_labels
    return cls(in_features, num_labels, **options)
