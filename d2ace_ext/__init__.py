"""d2ace_ext: D2ACE batch selection for deep multi-label classification in PyTorch.

Quick use::

    sampler = D2ACESampler(train_labels, batch_size=128, features=train_features)
    loader = DataLoader(IndexedDataset(train_set), batch_sampler=sampler)
    for epoch in range(100):
        sampler.set_epoch(epoch)
        for idx, x, y in loader:
            logits = model(x)
            sampler.update(idx, logits, y)
            ...
"""

from ._extension import build_info, extension_loaded, fallback_forced, force_fallback, use_native
from .config import PRESETS, D2ACEConfig
from .datasets.indexed import IndexedDataset
from .factory import make_sampler
from .sampler import D2ACESampler, SelectionBatchSampler
from .scoring import ScoreReport
from .selectors import SELECTORS, D2ACESelector, RandomSelector, Selector, make_selector
from .verdict import Verdict, compute_saved

__version__ = "0.1.0"

__all__ = [
    "D2ACEConfig",
    "PRESETS",
    "D2ACESampler",
    "SelectionBatchSampler",
    "D2ACESelector",
    "RandomSelector",
    "Selector",
    "SELECTORS",
    "make_selector",
    "make_sampler",
    "ScoreReport",
    "compute_saved",
    "Verdict",
    "IndexedDataset",
    "build_info",
    "extension_loaded",
    "fallback_forced",
    "force_fallback",
    "use_native",
]
