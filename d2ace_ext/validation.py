"""Argument checks that raise clear errors naming the offending argument.

All checks run before any state changes, so a rejected call leaves the sampler as it was.
Errors: TypeError for a wrong type or dtype, ValueError for a wrong shape, device or
value, IndexError for an index outside its range; the native kernels raise the same
classes with the same messages for the same faults (docs/fidelity.md, "Who checks what").
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch


def as_index_tensor(indices, n: int, name: str = "indices", *, check_values: bool = True) -> torch.Tensor:
    """indices: sequence or tensor of ints in [0, n), distinct -> (b,) int64 on the CPU.
    ``check_values=False`` checks the form only (type, dtype, 1-D, not empty), for a
    caller whose next layer checks the range and repeats itself (a fused record op)."""
    if isinstance(indices, torch.Tensor):
        check_dense(indices, name)
        tensor = indices.detach()
    else:
        try:
            tensor = torch.as_tensor(list(indices) if not isinstance(indices, Sequence) else indices)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a 1-D sequence or tensor of integers ({exc})") from None
    if tensor.numel() == 0:  # before the dtype: torch.as_tensor([]) is float32, not a wrong dtype
        raise ValueError(f"{name} must not be empty")
    if tensor.dtype != torch.int64 and (
        tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool
    ):
        raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.int64 or tensor.device.type != "cpu":
        tensor = tensor.to("cpu", torch.int64)
    if not check_values:
        return tensor
    # A batch is small: checking it as a Python list costs a few microseconds, several
    # tensor reductions (min, max, unique) cost tens, on every training step.
    values = tensor.tolist()
    low, high = min(values), max(values)
    if low < 0 or high >= n:
        raise IndexError(f"{name} must lie in [0, {n}), got values from {low} to {high}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat an instance within one batch")
    return tensor


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same one: ``cuda`` without an index is the current
    CUDA device, where tensors made for it land (a sampler built with device="cuda"
    holds torch.device("cuda"), its outputs arrive on cuda:0). There is one CPU device:
    a tensor made on "cpu:0" reports "cpu", so the CPU's index is never compared."""
    if a == b or (a.type == "cpu" and b.type == "cpu"):
        return True

    def resolved(d: torch.device) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if d.type == "cuda" and d.index is None else d

    return a.type == b.type and resolved(a) == resolved(b)


def check_dense(value: torch.Tensor, name: str) -> None:
    """``value`` must be an ordinary (strided) tensor: a sparse or nested one has no
    shape or elements the checks can read, and would fail later with PyTorch's internal
    error (on one DDP rank only, breaking the others' next collective)."""
    if value.is_nested or value.layout != torch.strided:
        form = "a nested tensor" if value.is_nested else f"layout {value.layout}"
        raise TypeError(f"{name} must be a dense tensor, got {form}; convert it first (sparse: .to_dense())")


def check_matrix(value, name: str, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """A (rows, cols) dense tensor on ``device``, floating point or 0/1-valued."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    check_dense(value, name)
    if value.dim() != 2 or tuple(value.shape) != (rows, cols):
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {tuple(value.shape)}")
    if not same_device(value.device, torch.device(device)):
        raise ValueError(
            f"{name} is on {value.device} but the sampler's state is on {device}; "
            f"move it, or build the sampler with device={str(value.device)!r}"
        )
    return value


def check_outputs(outputs: torch.Tensor, kind: str, values: bool = True) -> None:
    """Model outputs: floating point, no NaN; probabilities must also lie in [0, 1].

    Infinite logits are allowed: they are saturated predictions, well defined.
    ``values=False`` checks the dtype only (the form of a call; the values are the record
    path's to check, :func:`check_step`).
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


def check_real(value: torch.Tensor, name: str) -> None:
    """0/1 labels' dtype: bool, integer or floating point. A complex tensor is refused by
    name: its cast to float drops the imaginary part, so 1+0j would pass as a label."""
    if value.is_complex():
        raise TypeError(f"{name} must be real 0/1 labels (bool, integer or floating point), got dtype {value.dtype}")


def check_binary(value: torch.Tensor, name: str) -> None:
    """Every entry 0 or 1 (bool allowed), no NaN; a real dtype (:func:`check_real`)."""
    check_real(value, name)
    if value.dtype == torch.bool:
        return
    # x (1 - x) is 0 exactly for 0 and 1, and NaN or nonzero otherwise: one pass, not three.
    if not bool((value * (1 - value)).any()):
        return
    if value.is_floating_point() and bool(torch.isnan(value).any()):
        raise ValueError(f"{name} contain NaN; labels must be 0 or 1")
    raise ValueError(f"{name} must be 0/1 labels, found other values")


def check_targets_match(targets: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> None:
    """A step's targets (b, q) must equal the training labels (n, q) bool at ``index`` (b,).

    A mismatch almost always means the batch's rows are not the instances the sampler
    chose: the dataset is not wrapped in IndexedDataset (so indices are not passed
    through), or the labels given to the sampler are in another order than the dataset.
    ``labels=None`` (a selector built without labels) skips the check.
    """
    if labels is None:
        return
    expected = labels[index]
    if bool(targets.eq(expected).all()):
        return
    if not bool((targets.eq(0) | targets.eq(1)).all()):
        raise ValueError("targets must be 0/1 labels, found other values")
    rows = (targets != expected).any(1).nonzero().flatten()[:5]
    where = ", ".join(str(int(index[r])) for r in rows)
    raise ValueError(
        f"targets differ from the training labels the sampler was built with at instance(s) {where}: "
        "the batch's rows are not the instances the sampler chose. Wrap the dataset in "
        "d2ace_ext.IndexedDataset and pass the indices it yields to update(), and build the "
        "sampler from the labels in the dataset's own order"
    )


def check_step(
    outputs: torch.Tensor,
    kind: str,
    targets: torch.Tensor,
    labels: torch.Tensor | None,
    index: torch.Tensor,
    n: int | None = None,
) -> None:
    """One training step's values, with one host read in all: outputs (b, q) as
    :func:`check_outputs`, targets (b, q) as :func:`check_binary` and as
    :func:`check_targets_match` against labels (n, q) at index (b,) int64; with ``n``,
    also the indices as :func:`as_index_tensor` (for a caller whose indices did not come
    through it), first.

    On CUDA each of those checks alone is a synchronisation (3-4 per training step);
    here their flags are reduced on the device and read together. Only when one is set
    are the individual checks run again, to raise their own messages in their order.
    """
    flags = []
    if n is not None:
        flags += [((index < 0) | (index >= n)).any(), (index.sort().values.diff() == 0).any()]
        gather = index.clamp(0, n - 1)  # a bad index raises below, not in the gather
    else:
        gather = index
    flags.append(torch.isnan(outputs).any())
    if kind == "probs":
        flags.append(((outputs < 0) | (outputs > 1)).any())
    if targets.dtype != torch.bool:
        flags.append((targets * (1 - targets)).any())  # 0 exactly for 0 and 1 (check_binary)
    if labels is not None:
        expected = labels[gather.to(labels.device, non_blocking=True)]
        flags.append(targets.ne(expected).any())
    if not any(torch.stack(flags).tolist()):
        return
    if n is not None:
        as_index_tensor(index, n, "indices")
    check_outputs(outputs, kind)
    check_binary(targets, "targets")
    check_targets_match(targets, labels, index)


def check_labels(labels, name: str = "labels") -> torch.Tensor:
    """The training label matrix: (n, q) 0/1 with n >= 2 and q >= 1.

    Sparse labels (COO, CSR, ...) are converted to a dense (n, q) tensor, which is what
    is returned; complex labels are rejected.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, q), got {type(labels).__name__}")
    if labels.layout != torch.strided:
        labels = labels.to_dense()
    check_real(labels, name)
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


def is_int(value) -> bool:
    """A Python integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A finite Python int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_rule(owner: str, name: str, value, ok: bool, rule: str) -> None:
    """Raise ``owner.name must be <rule>`` unless ``ok`` (a bool value never passes)."""
    if isinstance(value, bool) or not ok:
        raise ValueError(f"{owner}.{name} must be {rule}, got {value!r}")


def check_seed(value, name: str = "seed") -> int:
    """A seed: any non-negative Python integer, however large (every consumer reduces it
    to 64 bits with :func:`seed64`), the same rule for every selector and the sampler."""
    return check_non_negative_int(value, name)


_MASK64 = (1 << 64) - 1


def seed64(seed: int, stream: int = 0) -> int:
    """A well-mixed 63-bit generator seed for (seed, stream) (splitmix64 finaliser).

    ``seed`` may be any non-negative integer: one of 2**64 or more is first hashed to 64
    bits (BLAKE2b), so large seeds are accepted everywhere and still give distinct streams.
    """
    if seed >> 64:
        data = seed.to_bytes((seed.bit_length() + 7) // 8, "little")
        seed = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    z = (seed * 0x9E3779B97F4A7C15 + (stream + 1) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1
