"""Model names -> classes, and the one constructor the harness and the demo call."""
from __future__ import annotations

import inspect

from .base import MultiLabelModel
from .clif import CLIF
from .dela import DELA
from .mlp import MLP
from .paca import PACA

MODELS: dict[str, type[MultiLabelModel]] = {"mlp": MLP, "clif": CLIF, "dela": DELA, "paca": PACA}
# Image models (ResNet backbone + head; in_features = 3 image channels, or the feature
# width with backbone="none"). Imported lazily by name: torchvision is optional.
IMAGE_MODELS = {"mlgcn": ("mlgcn", "MLGCN"), "hst": ("hst", "HST")}


def _image_model(name: str) -> type[MultiLabelModel]:
    import importlib
    module, cls = IMAGE_MODELS[name]
    return getattr(importlib.import_module(f".{module}", __package__), cls)


def _options(cls: type) -> list[str]:
    """The keyword options a model takes beyond (in_features, num_labels, train_labels)."""
    names = list(inspect.signature(cls.__init__).parameters)[1:]
    return [n for n in names if n not in ("in_features", "num_labels", "train_labels")]


def make_model(name: str, in_features: int, num_labels: int, *, train_labels=None, **options) -> MultiLabelModel:
    """Build model ``name`` for features (b, in_features) and ``num_labels`` labels.

    ``train_labels`` (n, q) 0/1 go to the models that use them (CLIF's label graph) and
    are ignored by the others, so callers can always pass them. Unknown names raise
    ValueError listing the valid ones; unknown options raise TypeError naming them.
    """
    cls = MODELS.get(name) or (_image_model(name) if name in IMAGE_MODELS else None)
    if cls is None:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted([*MODELS, *IMAGE_MODELS]))}")
    valid = _options(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"model {name!r} got unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(valid) or 'none'}")
    if "train_labels" in inspect.signature(cls.__init__).parameters:
        options["train_labels"] = train_labels
    return cls(in_features, num_labels, **options)
