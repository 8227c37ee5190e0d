"""Data helpers: the index-returning wrapper, synthetic sets and MULAN readers."""

from .indexed import IndexedDataset

__all__ = ["IndexedDataset"]
