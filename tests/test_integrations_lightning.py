"""SelectionCallback inside a real Lightning Trainer: updates from the step outputs,
exact resume from mid-epoch and end-of-epoch checkpoints, and DDP on two CPU ranks."""

import pytest
import torch

pytest.importorskip("lightning", reason="PyTorch Lightning not installed (pip install 'd2ace_ext[lightning]')")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from d2ace_ext import D2ACESampler  # noqa: E402
from d2ace_ext.integrations.lightning import SelectionCallback  # noqa: E402

from support import lightning_parts as parts  # noqa: E402
from support.workers import run_worker  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:.*resuming from a checkpoint"),
    pytest.mark.filterwarnings("ignore:Be aware that when using .ckpt_path."),
]


def fit(root, module, ckpt_path=None, every=None):
    callbacks = [SelectionCallback()]
    if every:
        callbacks.append(
            ModelCheckpoint(dirpath=str(root), filename="{step}", every_n_train_steps=every, save_top_k=-1)
        )
    parts.trainer(root, callbacks).fit(module, ckpt_path=ckpt_path)
    return module


def test_the_callback_records_every_step_and_the_sampler_weights_later_epochs(tmp_path):
    module = fit(tmp_path, parts.TinyModule())
    assert len(module.seen) == parts.CONFIG.num_epochs * 8
    visits = module.sampler.selector.state_dict()["visits"]
    assert any(int(t.count_nonzero()) > 0 for t in visits.values() if isinstance(t, torch.Tensor))
    assert module.sampler.epoch == parts.CONFIG.num_epochs - 1
    assert module.sampler.report is not None  # weighted epochs were scored from the records


# steps 12 and 27: mid shuffled / weighted epoch; 16: end of epoch 1; 20: mid weighted.
# With workers the DataLoader has drawn up to 4 batches ahead of the step when it saves.
@pytest.mark.parametrize("step,workers", [(12, 0), (16, 0), (20, 0), (27, 0), (12, 2), (20, 2)])
def test_resume_from_a_lightning_checkpoint_gives_the_same_later_batches(tmp_path, step, workers):
    reference = fit(tmp_path / "ref", parts.TinyModule(num_workers=workers), every=step)
    checkpoint = tmp_path / "ref" / f"step={step}.ckpt"
    assert checkpoint.exists()
    resumed = fit(tmp_path / "resumed", parts.TinyModule(num_workers=workers), ckpt_path=str(checkpoint))
    assert resumed.seen == reference.seen[step:]


def test_a_step_without_the_record_keys_is_an_error(tmp_path):
    class Bare(parts.TinyModule):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)["loss"]

    with pytest.raises(ValueError, match="'indices'"):
        fit(tmp_path, Bare())


def test_no_sampler_is_an_error(tmp_path):
    class Missing(parts.TinyModule):
        def setup(self, stage):
            pass

        def train_dataloader(self):
            sampler = D2ACESampler(self.y, parts.BATCH, self.x, config=parts.CONFIG)
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x), batch_sampler=sampler)

    with pytest.raises(RuntimeError, match="found no sampler"):
        fit(tmp_path, Missing())


def test_two_ddp_ranks_on_cpu_take_their_shards_of_the_single_process_batches(tmp_path):
    run_worker("lightning_ddp_worker", tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["replicas"] for r in ranks] == [2, 2]

    single = parts.TinyModule(stand_in=True)
    fit(tmp_path / "single", single)
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == len(single.seen)
    for step, global_batch in enumerate(single.seen):
        assert [ranks[r]["seen"][step] for r in range(2)] == [global_batch[0::2], global_batch[1::2]]
    reference = single.sampler.state_dict()["selector"]["visits"]
    for name, tensor in reference.items():
        for r in range(2):
            assert torch.equal(ranks[r]["state"]["selector"]["visits"][name], tensor), name


class _Counting(parts.TinyModule):
    """Records the epoch of every training step; ``build`` makes its sampler."""

    def __init__(self, build) -> None:
        super().__init__()
        self.build, self.epochs = build, []

    def setup(self, stage: str) -> None:
        if self.sampler is None:
            self.sampler = self.build(self.y, self.x)

    def training_step(self, batch, batch_idx):
        self.epochs.append(self.current_epoch)
        return super().training_step(batch, batch_idx)


def _per_epoch(module) -> list[int]:
    return [module.epochs.count(e) for e in range(parts.CONFIG.num_epochs)]


def test_annealed_full_epochs_of_a_budget_are_not_cut_to_the_first_epoch_s_length(tmp_path):
    # Lightning counts the batches once, at setup (4 here, ρ = 0.5): the annealed last two
    # epochs must still run their 8 batches (they ran 4).
    module = _Counting(lambda y, x: D2ACESampler(y, parts.BATCH, x, config=parts.CONFIG, budget=0.5, anneal=0.4))
    fit(tmp_path, module)
    assert _per_epoch(module) == [4, 4, 4, 8, 8]


def test_a_run_resumed_in_a_short_pruned_epoch_runs_the_full_epochs_in_full(tmp_path):
    from d2ace_ext import make_sampler

    def infobatch(y, x):
        return make_sampler("infobatch", y, parts.BATCH, x, seed=1, num_epochs=parts.CONFIG.num_epochs)

    reference = _Counting(infobatch)
    fit(tmp_path / "ref", reference, every=10)  # step 10: inside epoch 1, a pruned one
    counts = _per_epoch(reference)
    assert counts[0] == counts[4] == 8 and counts[1] < 8  # epoch 4: InfoBatch's annealed full pass
    resumed = _Counting(infobatch)
    fit(tmp_path / "resumed", resumed, ckpt_path=str(tmp_path / "ref" / "step=10.ckpt"))
    assert resumed.seen == reference.seen[10:]  # epoch 4, a full pass, was cut to epoch 1's length


def test_validation_runs_once_at_the_end_of_every_epoch_whatever_its_length(tmp_path):
    # The epoch-fraction val_check_interval (1.0) is counted in batches at setup, too: a
    # longer annealed epoch would validate halfway through as well.
    class Validated(_Counting):
        def __init__(self, build) -> None:
            super().__init__(build)
            self.validated = []

        def val_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=30)

        def validation_step(self, batch, batch_idx):
            if batch_idx == 0:
                self.validated.append((self.current_epoch, len(self.epochs)))

    module = Validated(lambda y, x: D2ACESampler(y, parts.BATCH, x, config=parts.CONFIG, budget=0.5, anneal=0.4))
    parts.trainer(tmp_path, [SelectionCallback()], num_sanity_val_steps=0).fit(module)
    assert _per_epoch(module) == [4, 4, 4, 8, 8]
    assert module.validated == [(0, 4), (1, 8), (2, 12), (3, 20), (4, 28)]
