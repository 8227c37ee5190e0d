"""Selectors: the D2ACE scorer and the baselines, behind one interface."""

from .active import ActiveConfig, ActiveSelector
from .balance import BalanceConfig, BalanceSelector
from .base import FIXED, PRUNED, SHUFFLE, WEIGHTED, Selector
from .d2ace import D2ACESelector
from .dihcl import DIHCLConfig, DIHCLSelector
from .hard_imb import HardImbConfig, HardImbSelector
from .infobatch import InfoBatchConfig, InfoBatchSelector
from .ml_unc import MLUncConfig, MLUncSelector
from .random import RandomSelector
from .recent import RecentConfig, RecentSelector
from .registry import SELECTORS, make_selector

__all__ = [
    "Selector",
    "D2ACESelector",
    "RandomSelector",
    "ActiveSelector",
    "ActiveConfig",
    "RecentSelector",
    "RecentConfig",
    "DIHCLSelector",
    "DIHCLConfig",
    "BalanceSelector",
    "BalanceConfig",
    "HardImbSelector",
    "HardImbConfig",
    "MLUncSelector",
    "MLUncConfig",
    "InfoBatchSelector",
    "InfoBatchConfig",
    "SELECTORS",
    "make_selector",
    "SHUFFLE",
    "FIXED",
    "WEIGHTED",
    "PRUNED",
]
