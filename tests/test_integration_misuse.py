"""The trainer integrations, tried as a new user would: a skipped Lightning step, a
validation loader sharing the training sampler, and plain ``prepare`` of Accelerate on
two processes. One test per case, named after what it
protects; each failed on the code before its fix."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from d2ace_ext import D2ACESampler, IndexedDataset
from d2ace_ext.integrations import LoopCheckpoint


# -- a skipped Lightning step ------------------------------------------------------------
def test_a_lightning_step_that_returns_none_is_a_skipped_step(tmp_path):
    pytest.importorskip("lightning")
    from d2ace_ext.integrations.lightning import SelectionCallback

    from support import lightning_parts as parts

    class Skipping(parts.TinyModule):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            return None if batch_idx % 3 == 1 else out  # Lightning's way to skip a batch

    module, callback = Skipping(), SelectionCallback()
    recorded = []
    module.setup("fit")
    update = module.sampler.update
    module.sampler.update = lambda index, *args, **kw: (recorded.append(index.tolist()), update(index, *args, **kw))
    parts.trainer(tmp_path, [callback], max_epochs=2).fit(module)
    assert len(module.seen) == 16  # every batch drawn and stepped through
    assert recorded == [b for i, b in enumerate(module.seen) if i % 8 % 3 != 1]  # skipped ones not recorded
    assert callback.tracker().consumed == 8  # ... but counted as consumed, for an exact resume


# -- a validation loader sharing the training sampler ------------------------------------
@pytest.mark.parametrize(
    "options",
    [{}, {"num_sanity_val_steps": 0, "val_check_interval": 0.5}],
    ids=["sanity-check", "mid-epoch-validation"],
)
def test_a_validation_loader_sharing_the_training_sampler_is_refused(tmp_path, options):
    pytest.importorskip("lightning")
    from d2ace_ext.integrations.lightning import SelectionCallback

    from support import lightning_parts as parts

    class SharedValidation(parts.TinyModule):
        def val_dataloader(self):  # the mistake: the training sampler again
            return DataLoader(IndexedDataset(TensorDataset(self.x, self.y)), batch_sampler=self.sampler)

        def validation_step(self, batch, batch_idx):
            return None

    module = SharedValidation()
    with pytest.raises(
        ValueError,
        match=r"validation DataLoader draws its batches from the training "
        r"SelectionBatchSampler.*batch_size=",
    ):
        parts.trainer(tmp_path, [SelectionCallback()], max_epochs=1, **options).fit(module)
    assert len(module.seen) <= 4  # refused at the first validation, not after a silently short epoch


# -- plain prepare of Accelerate ---------------------------------------------------------
def test_plain_accelerate_prepare_on_two_processes_is_caught_by_loop_checkpoint():
    pytest.importorskip("accelerate")
    from accelerate.data_loader import prepare_data_loader

    from support import accelerate_worker as worker

    x, y = worker.problem()
    batches = []
    for rank in (0, 1):  # what accelerator.prepare(loader) builds on each of two processes
        sampler = D2ACESampler(y, worker.BATCH, x, config=worker.CONFIG, seed=worker.SEED, num_replicas=2, rank=rank)
        loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_sampler=sampler)
        prepared = prepare_data_loader(
            loader, torch.device("cpu"), num_processes=2, process_index=rank, put_on_device=False
        )
        batches.append(len(list(prepared)))
        with pytest.raises(ValueError, match="BatchSamplerShard.*prepare_loader"):
            LoopCheckpoint(sampler)
    assert batches == [0, 1]  # of 8: what the README says (rank 0 none, rank 1 one; DDP hangs)

    # wrapped after the tracker was made: caught at the first step, before sampler.update
    sampler = D2ACESampler(y, worker.BATCH, x, config=worker.CONFIG, seed=worker.SEED, num_replicas=2, rank=1)
    tracker = LoopCheckpoint(sampler)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_sampler=sampler)
    prepared = prepare_data_loader(loader, torch.device("cpu"), num_processes=2, process_index=1, put_on_device=False)
    index, _, target = next(iter(prepared))
    with pytest.raises(ValueError, match="BatchSamplerShard"):
        tracker.update(index, torch.zeros_like(target), target)
