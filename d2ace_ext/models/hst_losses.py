"""HST's loss terms (module notes of ``hst``): the pair asymmetric loss of the intra-image
head, the instance contrastive loss, and the clamp whose gradient the learnable margins need."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clamp_keeping_bounds(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """clamp(x, low, high) whose gradient is 1 on [low, high] *including* the bounds and 0
    outside: torch's clamp before its minimum-norm subgradient change, which HST's
    learnable margins rely on at θ = 1 (``hst``'s module notes). Same shape as ``x``."""
    inside = (x >= low) & (x <= high)
    return torch.where(inside, x, x.detach().clamp(low, high))


def pair_asymmetric_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    pairs: torch.Tensor,
    gamma_neg: float = 2.0,
    gamma_pos: float = 1.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Mean asymmetric loss of pair logits (b, P) against 'both labels present'."""
    t = y[:, pairs[0]] * y[:, pairs[1]]
    p = torch.sigmoid(logits)
    p_neg = (1 - p + clip).clamp(max=1)
    loss = -(t * torch.log(p.clamp(min=eps)) + (1 - t) * torch.log(p_neg.clamp(min=eps)))
    prob = p * t + p_neg * (1 - t)
    return (loss * torch.pow(1 - prob, gamma_pos * t + gamma_neg * (1 - t))).mean()


def instance_contrastive_loss(sem: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Across the batch, per label: same-positive pairs pulled together, others apart."""
    b = sem.shape[0]
    i, j = torch.triu_indices(b, b, 1, device=sem.device)
    if i.numel() == 0:
        return sem.sum() * 0
    cos = F.cosine_similarity(sem[i], sem[j], dim=-1, eps=1e-9)  # (pairs, q)
    both = y[i] * y[j]
    none = (1 - y[i]) * (1 - y[j])
    pp, pn, nn_ = (1 - cos)[both > 0], (1 + cos)[(both == 0) & (none == 0)], (1 + cos)[none > 0]
    if pp.numel():
        k = pp.numel()

        def pick(v):
            return torch.cat(
                (v[torch.randperm(v.numel(), device=v.device)[: 2 * k]], torch.sort(v, descending=True)[0][:k])
            )

        pn, nn_ = pick(pn), pick(nn_)
    loss = torch.cat((pp, pn, nn_))
    return loss.mean() if loss.numel() else sem.sum() * 0
