"""Random multi-label problems and a loop that trains a sampler on them with random logits."""

import torch


def random_problem(n=40, q=5, d=6, density=0.35, seed=0):
    """(features (n, d) float32 in [0, 1), labels (n, q) float32 0/1 with about ``density`` positives)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    y = (torch.rand(n, q, generator=g) < density).float()
    return x, y


def drive(sampler, labels, epochs, seed=0, start_epoch=0):
    """Run epochs with random logits; returns the batches seen, as lists."""
    g = torch.Generator().manual_seed(seed)
    seen = []
    for epoch in range(start_epoch, start_epoch + epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            logits = torch.randn(len(batch), labels.shape[1], generator=g) * 2
            sampler.update(index, logits, labels[index])
            seen.append(batch)
    return seen
