"""The sampler driven by the fused kernels and by the pure-PyTorch fallback draws the
same batches and reaches the same state."""

from __future__ import annotations

import pytest
import torch

import d2ace_ext
from d2ace_ext import D2ACEConfig, D2ACESampler
from d2ace_ext.neighbors import random_neighbors

from support.fused_checks import STATE_FLOATS

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")


def run_sampler(labels, neighbors, config, table, drift, epochs, seed):
    sampler = D2ACESampler(labels, 7, config=config, neighbors=neighbors, seed=seed)
    batches, probabilities = [], []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            # model outputs: a fixed function of (instance, epoch)
            sampler.update(index, table[index] + epoch * drift[index], labels[index])
            batches.append(batch)
        probabilities.append(sampler.probabilities)
    return batches, probabilities, sampler


@pytest.mark.parametrize("preset", ["paper", "reference"])
@pytest.mark.parametrize("seed", range(2))
def test_sampler_native_and_fallback_draw_identical_batches(preset, seed):
    g = torch.Generator().manual_seed(31 + seed)
    n, q, epochs = 60, 5, 6
    config = D2ACEConfig.preset(preset).scaled_to(epochs).replace(window_size=3)
    labels = (torch.rand(n, q, generator=g) < 0.35).float()
    labels[0] = 1.0  # every column has a positive
    neighbors = random_neighbors(n, config.num_neighbors, g)
    table = torch.randn(n, q, generator=g) * 3
    drift = torch.randn(n, q, generator=g)
    assert d2ace_ext.use_native()
    native = run_sampler(labels, neighbors, config, table, drift, epochs, seed)
    with d2ace_ext.force_fallback():
        fallback = run_sampler(labels, neighbors, config, table, drift, epochs, seed)
    assert native[0] == fallback[0]
    weighted = [e for e in range(epochs) if e >= config.warmup_epochs]
    assert len(weighted) >= 4
    for epoch in weighted:
        p_native, p_fallback = native[1][epoch], fallback[1][epoch]
        assert not torch.equal(p_native, torch.full_like(p_native, 1.0 / n)) or epoch == epochs - 1
        torch.testing.assert_close(p_native, p_fallback, rtol=1e-5, atol=0)
    # the states the two runs ended with agree too
    for name in STATE_FLOATS:
        torch.testing.assert_close(
            getattr(native[2].selector.visits, name), getattr(fallback[2].selector.visits, name), rtol=1e-5, atol=1e-6
        )


def test_sampler_update_reads_tensor_values_on_the_host_once_per_step(monkeypatch):
    # On CUDA every read of a tensor value on the host is a synchronisation; a step used
    # to make four (NaN outputs, 0/1 targets, targets against the labels, and the index
    # copy). Counted here on the CPU, with float64 outputs so the record path checks the
    # values with PyTorch: one merged read, indices included (D2ACE's record path owns
    # the index check, so the sampler no longer lists them).
    # test_fused_cuda_paths.py counts the real synchronisations on a GPU.
    g = torch.Generator().manual_seed(1)
    n, q = 30, 4
    labels = (torch.rand(n, q, generator=g) < 0.4).float()
    labels[0] = 1.0
    sampler = D2ACESampler(labels, 8, config=D2ACEConfig(num_neighbors=0))
    sampler.set_epoch(0)
    index = torch.tensor(next(iter(sampler)))
    reads = []
    for name in ("__bool__", "item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, *a, _f=original, _n=name, **k: reads.append(_n) or _f(self, *a, **k)
        )
    sampler.update(index, torch.randn(len(index), q, generator=g, dtype=torch.float64), labels[index])
    monkeypatch.undo()
    assert reads == ["tolist"], reads
    assert int(sampler.selector.visits.pushes.sum()) == len(index)


def test_outputs_on_cuda_0_are_on_a_sampler_built_with_device_cuda(monkeypatch):
    # D2ACESampler(..., device="cuda") holds torch.device("cuda"); the model's outputs
    # arrive on cuda:0, and check_matrix compared the two with != and rejected every
    # step (bench_image_step.py on a GPU would have stopped at its first update).
    from d2ace_ext.validation import check_matrix, same_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    cuda, cuda0, cuda1 = torch.device("cuda"), torch.device("cuda:0"), torch.device("cuda:1")
    assert same_device(cuda0, cuda) and same_device(cuda, cuda0) and same_device(cuda, cuda)
    assert not same_device(cuda1, cuda) and not same_device(cuda0, cuda1)
    assert same_device(torch.device("cpu"), torch.device("cpu")) and not same_device(torch.device("cpu"), cuda)
    meta = torch.empty(2, 3, device="meta")
    with pytest.raises(ValueError, match="outputs is on meta but the sampler's state is on cuda"):
        check_matrix(meta, "outputs", 2, 3, cuda)
