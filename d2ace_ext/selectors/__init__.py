"""Selectors: the D2ACE scorer and the baselines, behind one interface."""
from .base import FIXED, SHUFFLE, WEIGHTED, Selector
from .d2ace import D2ACESelector
from .random import RandomSelector

__all__ = ["Selector", "D2ACESelector", "RandomSelector", "SHUFFLE", "FIXED", "WEIGHTED"]
