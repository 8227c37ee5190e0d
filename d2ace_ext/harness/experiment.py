"""What one experiment is: the protocol settings shared by every run of a comparison,
and the key of one (dataset, model, selector, preset, fold) run in a results file.

Defaults are the paper's tabular protocol (Appendix D.2): 5 folds, 10 % of each
training fold for validation, Adam lr 1e-4, weight decay 1e-4, linear LR warm-up over
10 epochs, batch 128, 100 epochs, seed 55 (the published code's), test metrics at the
best-validation epoch from a real copy of the weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from ..datasets.label_noise import LabelNoise
from ..selectors.registry import SelectorFacts, has_presets
from ..validation import is_real

#: Selector names as the paper prints them, {name: display name} in registry order: a
#: live view of each registered selector's ``display_name``.
DISPLAY_NAMES = SelectorFacts("display_name")
PREPROCESSING = ("reference", "leak_free")
MODEL_SELECTION = ("best", "last")
FOLDS_FROM = ("stratified", "published")
#: Seeds of repeat r start at ``seed + REPEAT_STRIDE * r``: far apart from ``seed + fold``.
REPEAT_STRIDE = 1000
#: Protocol fields added after results were first recorded: left out of the digest while
#: at their default, so the digests of earlier results folders stay valid.
_LATER_FIELDS = {"folds_from": "stratified", "budget": 1.0, "anneal": 0.0, "label_noise": None}
#: Models whose D2ACE-authors' build (variant "published") the "reference" preset selects.
PUBLISHED_VARIANT_MODELS = ("clif", "dela", "paca")


def canonical_selector(name: str) -> str:
    """'Hard-Imb', 'hard-imb' and 'hard_imb' all name the registry's 'hard_imb'."""
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Protocol:
    """Settings every run of a comparison shares. ``preprocessing``: "reference" filters
    and scales the whole set before the folds (published code), "leak_free" fits them on
    each training fold. ``model_selection``: "best" tests a deep copy of the weights at
    the best validation Macro-AUC; "last" tests the last epoch, which is what the
    published code's shallow copy amounted to. ``feature_fraction``: None takes the
    published fraction for the set. ``importance_weights``: weight each instance's loss
    by 1 / (n P_i) (Appendix C's unbiased estimator; the published code does not).
    ``model_options`` / ``selector_options``: {model or selector name: {option: value}}.
    ``folds_from``: "stratified" (``iterative-stratification``'s k-fold, a stratified
    validation part, model seed ``seed + fold``) or "published" (the authors' split
    exactly, ``published_split``: scikit-multilearn's folds, ``random_split``'s validation
    part, and, as their script reseeds for every fold, model seed ``seed`` in every fold).
    ``budget``: each epoch trains on ⌈budget · n⌉ samples (every selector, Random a
    uniform subset); ``anneal``: the last ⌈anneal · epochs⌉ epochs are full passes again.
    ``label_noise``: None (clean labels) or ``KIND:RATE`` (``missing``, ``extra``, ``flip``;
    ``datasets/label_noise.py``), applied to the training and validation parts of each
    fold, never the test part, from a seed of (seed, repeat, fold); kept in its canonical
    spelling (``missing:.2`` becomes ``missing:0.2``)."""

    folds: int = 5
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-4
    lr_warmup_epochs: int = 10
    val_fraction: float = 0.1
    seed: int = 55
    preprocessing: str = "reference"
    min_positives: int = 21
    feature_fraction: float | None = None
    model_selection: str = "best"
    importance_weights: bool = False
    model_options: dict = field(default_factory=dict)
    selector_options: dict = field(default_factory=dict)
    folds_from: str = "stratified"
    budget: float = 1.0
    anneal: float = 0.0
    label_noise: str | None = None

    def __post_init__(self) -> None:
        if self.label_noise is not None:  # one spelling per setting, so one digest
            object.__setattr__(self, "label_noise", LabelNoise.parse(self.label_noise, "protocol label_noise").spec())
        rules = [
            ("folds", isinstance(self.folds, int) and self.folds >= 2, "an integer >= 2"),
            ("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            (
                "lr_warmup_epochs",
                isinstance(self.lr_warmup_epochs, int) and self.lr_warmup_epochs >= 0,
                "an integer >= 0",
            ),
            ("val_fraction", 0 < self.val_fraction < 1, "in (0, 1)"),
            ("preprocessing", self.preprocessing in PREPROCESSING, f"one of {PREPROCESSING}"),
            ("min_positives", isinstance(self.min_positives, int) and self.min_positives >= 1, "an integer >= 1"),
            ("feature_fraction", self.feature_fraction is None or 0 < self.feature_fraction <= 1, "None or in (0, 1]"),
            ("model_selection", self.model_selection in MODEL_SELECTION, f"one of {MODEL_SELECTION}"),
            ("folds_from", self.folds_from in FOLDS_FROM, f"one of {FOLDS_FROM}"),
            ("budget", is_real(self.budget) and 0 < self.budget <= 1, "a number in (0, 1]"),
            ("anneal", is_real(self.anneal) and 0 <= self.anneal <= 1, "a number in [0, 1]"),
            (
                "anneal",
                not (is_real(self.budget) and self.budget >= 1 and is_real(self.anneal) and self.anneal > 0),
                "0 at budget 1, where every epoch is a full pass already (an anneal there would only give the "
                "same runs another digest); InfoBatch's own anneal is selector_options "
                "(--selector-opt infobatch.anneal=VALUE)",
            ),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"protocol {name} must be {rule}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """8 hex digits naming these settings; runs under other settings never mix."""
        settings = {k: v for k, v in self.to_dict().items() if _LATER_FIELDS.get(k, object()) != v}
        text = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def fold_seed(self, repeat: int) -> int:
        """The seed that cuts repeat ``repeat``'s folds (repeat 0: ``seed``)."""
        return self.seed + REPEAT_STRIDE * repeat

    def run_seed(self, repeat: int, fold: int) -> int:
        """Model initialisation and sampler seed of one fold run: every selector starts a
        fold from the same weights. Published folds keep the authors' one seed per repeat."""
        return self.fold_seed(repeat) + (0 if self.folds_from == "published" else fold)


def with_published_variants(models, model_options: dict) -> dict:
    """``model_options`` with ``variant="published"`` added for every model in ``models``
    that has one and names no variant itself (what the "reference" preset runs)."""
    out = {name: dict(options) for name, options in model_options.items()}
    for name in models:
        if name in PUBLISHED_VARIANT_MODELS:
            out.setdefault(name, {}).setdefault("variant", "published")
    return out


@dataclass(frozen=True)
class RunKey:
    """One fold of one repeat of one configuration. ``preset`` is the preset of a selector
    with presets (D2ACE's; "-" for others); ``repeat`` r cuts its folds and seeds its runs
    from ``seed + 1000 r``."""

    dataset: str
    model: str
    selector: str
    preset: str
    fold: int
    protocol: str
    repeat: int = 0

    @classmethod
    def make(cls, dataset, model, selector, preset, fold, protocol: Protocol, repeat: int = 0) -> "RunKey":
        selector = canonical_selector(selector)
        return cls(dataset, model, selector, preset if has_presets(selector) else "-", fold, protocol.digest(), repeat)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def stem(self) -> str:
        repeat = f"__r{self.repeat}" if self.repeat else ""  # repeat 0 keeps the earlier names
        return f"{self.dataset}__{self.model}__{self.selector}__{self.preset}{repeat}__f{self.fold}"
