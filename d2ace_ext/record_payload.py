"""One training step's records as bytes, so that one tensor collective moves them.

A row is the instance index (int64, 8 bytes), the model's outputs (q float32) and the
0/1 targets (q bytes): 8 + 5q bytes, 508 at q = 100. The bytes are copied, never
converted, so NaN payloads, infinities and every float bit pattern arrive unchanged
(collectives move uint8 tensors byte for byte on gloo and NCCL alike). Targets must be
0/1 when packed (the sampler checks them before any rank sends).
"""

from __future__ import annotations

import torch


def row_bytes(q: int) -> int:
    """Bytes of one packed row for q labels."""
    return 8 + 5 * q


def pack(index: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, device: torch.device) -> torch.Tensor:
    """index (b,) int64, outputs (b, q) float32, targets (b, q) 0/1 -> (b, 8 + 5q) uint8
    on ``device``."""
    b, q = outputs.shape
    payload = torch.empty(b, row_bytes(q), dtype=torch.uint8, device=device)
    payload[:, :8] = index.to(device, torch.int64).contiguous().view(torch.uint8).reshape(b, 8)
    payload[:, 8 : 8 + 4 * q] = outputs.to(device, torch.float32).contiguous().view(torch.uint8).reshape(b, 4 * q)
    payload[:, 8 + 4 * q :] = targets.to(device).to(torch.uint8)
    return payload


def unpack(payload: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(r, 8 + 5q) uint8 -> index (r,) int64, outputs (r, q) float32, targets (r, q)
    float32, on the payload's device."""
    r = payload.shape[0]
    index = _bytes_as(payload[:, :8], torch.int64).reshape(r)
    outputs = _bytes_as(payload[:, 8 : 8 + 4 * q], torch.float32).reshape(r, q)
    targets = payload[:, 8 + 4 * q :].to(torch.float32)
    return index, outputs, targets


def _bytes_as(columns: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (r, k) uint8 column slice read as ``dtype`` (1-D); copied first, since a slice
    of one row is "contiguous" with the payload's row stride, which a dtype view refuses."""
    return columns.reshape(-1).clone().view(dtype)
