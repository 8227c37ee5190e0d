"""Accelerate keeps our batch sampler: prepare_loader on one and on two CPU processes,
and an exact mid-epoch resume through accelerator.save_state / load_state."""

import pytest
import torch

pytest.importorskip("accelerate", reason="Hugging Face Accelerate not installed (pip install 'd2ace_ext[accelerate]')")

from accelerate.state import AcceleratorState  # noqa: E402

from d2ace_ext import D2ACESampler  # noqa: E402

from support import accelerate_worker as worker  # noqa: E402
from support.workers import run_worker  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    # Accelerate keeps one process-wide state; each test starts and ends without it.
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def drive(sampler, labels, epochs):
    """The batches one process draws with the stand-in logits (no Accelerate)."""
    seen = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            sampler.update(index, worker.stand_in_logits(index, epoch), labels[index])
            seen.append(batch)
    return seen


def reference():
    x, y = worker.problem()
    return drive(D2ACESampler(y, worker.BATCH, x, config=worker.CONFIG, seed=worker.SEED), y, worker.EPOCHS)


@pytest.mark.parametrize("accelerate_prepare", [False, True], ids=["prepare_loader", "accelerator.prepare"])
def test_one_process_keeps_the_sampler_and_its_batches(accelerate_prepare):
    accelerator, loader, sampler, model, optimizer, tracker = worker.setup(accelerate_prepare)
    assert loader.batch_sampler is sampler
    seen = worker.train(accelerator, loader, sampler, model, optimizer, tracker, worker.EPOCHS)
    assert seen == reference()


def test_prepare_loader_rejects_a_sampler_built_for_another_world():
    from accelerate import Accelerator
    from torch.utils.data import DataLoader, TensorDataset

    from d2ace_ext.integrations.accelerate import prepare_loader

    x, y = worker.problem()
    sampler = D2ACESampler(y, 8, x, config=worker.CONFIG, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="after Accelerator"):
        prepare_loader(Accelerator(cpu=True), DataLoader(TensorDataset(x, y), batch_sampler=sampler))
    with pytest.raises(TypeError, match="SelectionBatchSampler"):
        prepare_loader(Accelerator(cpu=True), DataLoader(TensorDataset(x, y), batch_size=8))


@pytest.mark.parametrize("stop", [(2, 3), (1, 8)])  # mid weighted epoch; end of a shuffled epoch
def test_save_state_mid_epoch_resumes_with_the_same_batches(tmp_path, stop):
    expected = reference()
    accelerator, loader, sampler, model, optimizer, tracker = worker.setup()
    seen = worker.train(accelerator, loader, sampler, model, optimizer, tracker, stop[0])
    loader.set_epoch(stop[0])
    for step, (index, x, y) in enumerate(loader, start=1):
        tracker.update(index, worker.stand_in_logits(index, stop[0]), y)
        seen.append(index.tolist())
        if step == stop[1]:
            break
    accelerator.save_state(str(tmp_path))

    AcceleratorState._reset_state(True)
    accelerator, loader, sampler, model, optimizer, tracker = worker.setup()
    accelerator.load_state(str(tmp_path))
    rest = worker.train(
        accelerator, loader, sampler, model, optimizer, tracker, worker.EPOCHS, start=tracker.resume_epoch
    )
    assert seen + rest == expected


def test_two_cpu_processes_take_their_shards_and_plain_prepare_would_reshard(tmp_path):
    run_worker("accelerate_worker", tmp_path, 2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["replicas"] for r in ranks] == [2, 2] and all(r["same_sampler"] for r in ranks)
    expected = reference()
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == len(expected)
    for step, global_batch in enumerate(expected):
        assert [ranks[r]["seen"][step] for r in range(2)] == [global_batch[0::2], global_batch[1::2]]
    for name, tensor in ranks[0]["state"]["selector"]["visits"].items():
        assert torch.equal(ranks[1]["state"]["selector"]["visits"][name], tensor), name
    # Plain accelerator.prepare(loader) wraps the sampler in BatchSamplerShard (caught by
    # check_loader), which drops the shards: fewer batches than an epoch has (rank 0 none, rank 1 one).
    assert all(r["resharded"] for r in ranks)
    assert len(ranks[0]["plain_batches"]) < len(expected) // worker.EPOCHS


@pytest.mark.parametrize("set_epoch", ["none", "sampler"])
def test_a_resumed_loop_that_leaves_the_loader_s_epoch_at_zero_is_stopped(tmp_path, set_epoch):
    """Accelerate's prepared loader sets its own iteration count as the sampler's epoch.
    A resumed loop that does not call loader.set_epoch (or calls sampler.set_epoch, as a
    plain loop does) used to train warm-up epochs 0 and 1 again in place of 2 and 3, silently."""
    accelerator, loader, sampler, model, optimizer, tracker = worker.setup()
    worker.train(accelerator, loader, sampler, model, optimizer, tracker, 2)
    accelerator.save_state(str(tmp_path))

    AcceleratorState._reset_state(True)
    accelerator, loader, sampler, model, optimizer, tracker = worker.setup()
    accelerator.load_state(str(tmp_path))
    before = sampler.state_dict()["selector"]["visits"]
    assert tracker.resume_epoch == 2
    if set_epoch == "sampler":
        sampler.set_epoch(2)
    index, x, y = next(iter(loader))
    with pytest.raises(RuntimeError, match="loader.set_epoch"):
        tracker.update(index, worker.stand_in_logits(index, 0), y)
    after = sampler.state_dict()["selector"]["visits"]
    assert all(torch.equal(after[name], tensor) for name, tensor in before.items())  # nothing recorded
