"""Argument checks that raise clear errors naming the offending argument.

All checks run before any state changes, so a rejected call leaves the sampler as it was.
"""
from __future__ import annotations

from typing import Sequence

import torch


def as_index_tensor(indices, n: int, name: str = "indices") -> torch.Tensor:
    """indices: sequence or tensor of ints in [0, n), distinct -> (b,) int64 on the CPU."""
    if isinstance(indices, torch.Tensor):
        tensor = indices.detach()
    else:
        try:
            tensor = torch.as_tensor(list(indices) if not isinstance(indices, Sequence) else indices)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a 1-D sequence or tensor of integers ({exc})") from None
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    tensor = tensor.to("cpu", torch.int64)
    # A batch is small: checking it as a Python list costs a few microseconds, several
    # tensor reductions (min, max, unique) cost tens, on every training step.
    values = tensor.tolist()
    low, high = min(values), max(values)
    if low < 0 or high >= n:
        raise IndexError(f"{name} must lie in [0, {n}), got values from {low} to {high}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat an instance within one batch")
    return tensor


def check_matrix(value, name: str, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """A (rows, cols) tensor on ``device``, floating point or 0/1-valued."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 2 or tuple(value.shape) != (rows, cols):
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {tuple(value.shape)}")
    if value.device != device:
        raise ValueError(
            f"{name} is on {value.device} but the sampler's state is on {device}; "
            f"move it, or build the sampler with device={str(value.device)!r}"
        )
    return value


def check_outputs(outputs: torch.Tensor, kind: str, values: bool = True) -> None:
    """Model outputs: floating point, no NaN; probabilities must also lie in [0, 1].

    Infinite logits are allowed: they are saturated predictions, well defined.
    ``values=False`` checks the dtype only (for a consumer that checks values itself).
    """
    if not outputs.is_floating_point():
        raise TypeError(f"outputs must be floating point ({kind}), got dtype {outputs.dtype}")
    if not values:
        return
    if bool(torch.isnan(outputs).any()):
        raise ValueError(f"outputs contain NaN ({kind}); the sampler state was not changed")
    if kind == "probs":
        if bool(((outputs < 0) | (outputs > 1)).any()):
            raise ValueError("outputs must be probabilities in [0, 1] when kind='probs'")


def check_binary(value: torch.Tensor, name: str) -> None:
    """Every entry 0 or 1 (bool allowed), no NaN."""
    if value.dtype == torch.bool:
        return
    # x (1 - x) is 0 exactly for 0 and 1, and NaN or nonzero otherwise: one pass, not three.
    if not bool((value * (1 - value)).any()):
        return
    if value.is_floating_point() and bool(torch.isnan(value).any()):
        raise ValueError(f"{name} contain NaN; labels must be 0 or 1")
    raise ValueError(f"{name} must be 0/1 labels, found other values")


def check_labels(labels, name: str = "labels") -> torch.Tensor:
    """The training label matrix: (n, q) 0/1 with n >= 2 and q >= 1."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, q), got {type(labels).__name__}")
    if labels.dim() != 2:
        raise ValueError(f"{name} must have shape (n, q), got {tuple(labels.shape)}")
    n, q = labels.shape
    if n < 2:
        raise ValueError(f"{name} must hold at least 2 instances to select among, got n = {n}")
    if q < 1:
        raise ValueError(f"{name} must hold at least one label column, got q = {q}")
    check_binary(labels, name)
    return labels


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value
