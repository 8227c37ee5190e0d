import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_data_dir():
    """The MULAN folder: $D2ACE_DATA_DIR, else ../shared/data beside the checkout."""
    folder = os.environ.get("D2ACE_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data")
    return folder if os.path.isdir(folder) else None


@pytest.fixture
def data_dir():
    folder = shared_data_dir()
    if folder is None:
        pytest.skip("MULAN data folder not found: set D2ACE_DATA_DIR or place shared/data beside the checkout")
    return folder


def random_problem(n=40, q=5, d=6, density=0.35, seed=0):
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
