"""The paper's image protocol (Appendix D), its mAP, and the selectors' image schedule.

Defaults are the paper's: official train/test split (no folds), input 448 × 448 from a
512 scale with multi-scale crops and flips, Adam lr 1e-5, betas (0.9, 0.999), weight
decay 5e-4, batch 32, 20 epochs, selector warm-up T_w = 5 and D2ACE's p_β moving from
epoch 5 to 15; mAP is the headline metric. Every size is an option, so a CPU run can use
small images, a small backbone and few epochs; the schedule then scales with ``epochs``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import factory
from ..factory import PaperSchedule, make_run_sampler
from ..validation import is_real

#: The paper's image schedule (Appendix D): 20 epochs, selector warm-up T_w = 5, D2ACE's
#: p_β moving from epoch 5 to 15; runs of other lengths scale it.
IMAGE_SCHEDULE = PaperSchedule(epochs=20, values={"warmup_epochs": 5, "t_start": 5, "t_end": 15})
MODEL_SELECTION = ("val", "last", "test")
#: Fields added after image results were first recorded: left out of the digest while at
#: their default, so earlier digests (docs/evidence/mosaic_dihcl_subset.jsonl) stay valid.
_LATER_FIELDS = {"inputs": {}, "budget": 1.0}


@dataclass(frozen=True)
class ImageProtocol:
    """Settings shared by every run of an image comparison.

    ``model_selection``: "val" tests the weights of the epoch with the best mAP on a
    seeded ``val_fraction`` of the training split (held out from training); "last" the
    last epoch; "test" the best epoch on the test split itself, which is what the
    ML-GCN / HST code bases report (optimistic: the test set chooses the epoch).
    ``lr_step``: multiply the LR by 0.1 every ``lr_step`` epochs (HST's code: 10); 0 = constant.
    ``inputs``: what the runs read besides these settings (a features file's content
    hash, an image folder and its label rules, model files' hashes), filled per data
    set by ``image_inputs.run_inputs``, so runs on other data never share a digest.
    ``budget``: each epoch trains on ⌈budget · n⌉ images (the sampler's epoch budget).
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 5e-4
    lr_step: int = 0
    image_size: int = 448
    scale_size: int = 512
    model_selection: str = "val"
    val_fraction: float = 0.1
    seed: int = 0
    amp: bool = True
    mosaic: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    selector_options: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    budget: float = 1.0

    def __post_init__(self) -> None:
        rules = [
            ("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("lr_step", isinstance(self.lr_step, int) and self.lr_step >= 0, "an integer >= 0"),
            ("image_size", isinstance(self.image_size, int) and self.image_size >= 16, "an integer >= 16"),
            ("scale_size", self.scale_size >= self.image_size, ">= image_size"),
            ("model_selection", self.model_selection in MODEL_SELECTION, f"one of {MODEL_SELECTION}"),
            ("val_fraction", 0 < self.val_fraction < 1, "in (0, 1)"),
            ("budget", is_real(self.budget) and 0 < self.budget <= 1, "a number in (0, 1]"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"image protocol {name} must be {rule}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """8 hex digits naming these settings (``amp`` excluded: a numerics switch, not
        a protocol change, so a CPU and a GPU run of one protocol share results; fields
        added later left out while at their default, so earlier digests stay valid)."""
        settings = {k: v for k, v in self.to_dict().items() if k != "amp" and _LATER_FIELDS.get(k, object()) != v}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def model_options(protocol: ImageProtocol, model: str) -> dict:
    """The model's options: HST's pseudo-label / prototype epochs (5 and every 5 of the
    paper's 20) scaled to ``epochs`` like the selectors' schedule, then the user's."""
    options = {}
    if model == "hst":
        start = max(1, round(5 * protocol.epochs / IMAGE_SCHEDULE.epochs))
        options = {"generate_label_epoch": start, "prototype_every": start}
    return {**options, **protocol.model_options.get(model, {})}


def build_image_sampler(
    selector: str,
    labels: torch.Tensor,
    features: torch.Tensor | None,
    protocol: ImageProtocol,
    seed: int,
    preset: str = "paper",
    device=None,
):
    """The selector's batch sampler with the image schedule (T_w = 5, t_start 5, t_end 15
    of 20 epochs, scaled to ``protocol.epochs``: ``IMAGE_SCHEDULE``);
    ``protocol.selector_options[selector]`` override it."""
    return make_run_sampler(
        selector,
        labels,
        protocol.batch_size,
        features,
        seed=seed,
        epochs=protocol.epochs,
        schedule=IMAGE_SCHEDULE,
        preset=preset,
        options=protocol.selector_options.get(selector),
        device=device,
        budget=protocol.budget,
    )


def needs_features(selector: str, protocol: ImageProtocol, preset: str = "paper") -> bool:
    """Whether the selector builds a K-NN over the training inputs under this protocol's
    options (``factory.needs_features``: Hard-Imb, D2ACE with K > 0)."""
    return factory.needs_features(selector, preset, protocol.selector_options.get(selector))


def mean_average_precision(targets, scores, ignore=None) -> float:
    """mAP (n, q): the mean over labels with a positive of scikit-learn's (non-interpolated)
    average precision; ``ignore`` (n, q) bool entries are left out of their label's
    ranking (VOC's difficult objects)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    s = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    keep = None if ignore is None else ~np.asarray(ignore.cpu() if isinstance(ignore, torch.Tensor) else ignore)
    values = []
    for j in range(y.shape[1]):
        rows = slice(None) if keep is None else keep[:, j]
        yj, sj = y[rows, j], s[rows, j]
        if yj.sum() > 0:
            values.append(average_precision_score(yj, sj))
    return float(np.mean(values)) if values else float("nan")
