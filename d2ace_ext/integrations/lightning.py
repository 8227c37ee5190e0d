"""PyTorch Lightning: :class:`SelectionCallback` drives a selection sampler from the
training loop (``pip install d2ace_ext[lightning]``).

The LightningModule's ``training_step`` returns a dict with

- ``"loss"``: the loss Lightning optimises, as usual;
- ``"indices"``: (b,) the batch's instance indices (``IndexedDataset`` puts them first);
- ``"logits"``: (b, q) the logits of that same forward pass (``"probs"`` with ``kind="probs"``);
- ``"targets"``: (b, q) the 0/1 labels.

A step that returns None (Lightning's way to skip a batch) counts the batch as consumed
and records nothing.

The callback calls ``sampler.set_epoch`` at each training epoch start and
``sampler.update`` after each training batch, and keeps the sampler state in
Lightning's checkpoints: a checkpoint saved mid-epoch resumes at the first batch the
loop had not consumed, although Lightning's fetcher had already drawn the next one
(see :mod:`d2ace_ext.integrations.resume`). It refuses a validation, test or predict
DataLoader built on the training sampler: iterating it would take the batches of the
training epoch (give those loaders their own ``batch_size``).

The sampler is passed in, or found as ``<attribute>`` (default ``sampler``) on the
LightningDataModule or the LightningModule. To restore it from a checkpoint it must
exist once the ``setup`` hooks have run (the state is applied then, before the first
batch is drawn); under DDP create it in ``setup()`` so it sees the process group, and
pass ``Trainer(use_distributed_sampler=False)`` so Lightning does not replace it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as error:
        raise ImportError(
            "d2ace_ext.integrations.lightning needs PyTorch Lightning: pip install 'd2ace_ext[lightning]'"
        ) from error

from ..sampler import SelectionBatchSampler
from .resume import LoopCheckpoint


class SelectionCallback(Callback):
    """Calls ``set_epoch`` and ``update`` on a :class:`SelectionBatchSampler` from a
    Lightning training loop and round-trips its state through Lightning's checkpoints.

    sampler: the batch sampler (or None: found as ``attribute`` on the datamodule or
    the module); kind: ``"logits"`` or ``"probs"``, what the step returns under the key
    of the same name (``"logits"`` or ``"probs"``).
    """

    def __init__(
        self, sampler: SelectionBatchSampler | None = None, *, attribute: str = "sampler", kind: str = "logits"
    ) -> None:
        if sampler is not None and not isinstance(sampler, SelectionBatchSampler):
            raise TypeError(f"sampler must be a SelectionBatchSampler, got {type(sampler).__name__}")
        if kind not in ("logits", "probs"):
            raise ValueError(f"kind must be 'logits' or 'probs', got {kind!r}")
        self._sampler, self.attribute, self.kind = sampler, attribute, kind
        self._owners: tuple = ()
        self._tracker: LoopCheckpoint | None = None
        self._pending: dict | None = None

    # -- finding the sampler -------------------------------------------------------
    def _find(self) -> SelectionBatchSampler | None:
        if self._sampler is not None:
            return self._sampler
        for owner in self._owners:
            found = getattr(owner, self.attribute, None)
            if isinstance(found, SelectionBatchSampler):
                return found
        return None

    def tracker(self) -> LoopCheckpoint:
        """The :class:`LoopCheckpoint` of the sampler in use (raises if none is found)."""
        sampler = self._find()
        if sampler is None:
            raise RuntimeError(
                f"SelectionCallback found no sampler: pass it to the callback, or set `self.{self.attribute}` "
                "to the SelectionBatchSampler in your LightningDataModule's or LightningModule's setup()"
            )
        if self._tracker is None or self._tracker.sampler is not sampler:
            self._tracker = LoopCheckpoint(sampler)
        return self._tracker

    # -- hooks ------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        self._owners = tuple(o for o in (getattr(trainer, "datamodule", None), pl_module) if o is not None)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            raise RuntimeError(
                "the checkpoint's sampler state could not be restored before the first batch was drawn: create the "
                f"sampler in setup() (as `self.{self.attribute}`) or pass it to SelectionCallback"
            )
        sampler = self.tracker().sampler
        if sampler.shard_state and sampler.num_replicas > 1:
            warnings.warn(
                f"the sampler's selector state is sharded over {sampler.num_replicas} ranks (shard_state=True), but "
                "Lightning writes callback state from rank 0 only: its checkpoints cannot restore the other ranks' "
                "rows. Save every rank's SelectionCallback.state_dict() yourself (docs/scaling.md), or build the "
                "sampler without shard_state",
                RuntimeWarning,
                stacklevel=2,
            )

    def on_validation_start(self, trainer, pl_module) -> None:
        # Also runs for the sanity check, and for every validation inside an epoch
        # (val_check_interval), before its first step.
        self._refuse_shared_sampler(trainer.val_dataloaders, "validation")

    def on_test_start(self, trainer, pl_module) -> None:
        self._refuse_shared_sampler(trainer.test_dataloaders, "test")

    def on_predict_start(self, trainer, pl_module) -> None:
        self._refuse_shared_sampler(trainer.predict_dataloaders, "predict")

    def _refuse_shared_sampler(self, loaders, stage: str) -> None:
        """A loader of another stage iterating the training sampler advances its position:
        the training epoch then silently loses those batches (2 of 8 to the sanity check)."""
        sampler = self._find()
        if sampler is None:
            return
        for loader in _loaders(loaders):
            if any(
                part is sampler for part in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None))
            ):
                raise ValueError(
                    f"the {stage} DataLoader draws its batches from the training SelectionBatchSampler, which "
                    f"would take them from the training epoch; give the {stage} loader its own batches, e.g. "
                    f"DataLoader({stage}_set, batch_size=...)"
                )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Lightning already calls set_epoch on the loader's batch sampler; this covers a
        # sampler reached another way. Re-setting the current epoch keeps a resumed position.
        sampler = self.tracker().sampler
        sampler.set_epoch(trainer.current_epoch)
        _match_epoch_length(trainer, sampler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tracker = self.tracker()
        # A skipped step (training_step returned None, which Lightning hands on as None or
        # as an empty dict): the batch is consumed, nothing recorded.
        if outputs is None or (isinstance(outputs, Mapping) and not outputs):
            tracker.step()
            return
        key = "logits" if self.kind == "logits" else "probs"
        missing = [k for k in ("indices", key, "targets") if not isinstance(outputs, Mapping) or k not in outputs]
        if missing:
            raise ValueError(
                f"training_step must return a dict with 'loss', 'indices', '{key}' and 'targets' for "
                f"SelectionCallback; missing: {', '.join(missing)}"
            )
        tracker.update(outputs["indices"], outputs[key].detach(), outputs["targets"].detach(), kind=self.kind)

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self._find() is None:
            return dict(self._pending or {})
        return self.tracker().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        self._pending = dict(state_dict)
        if self._find() is not None:  # runs after the setup hooks: apply before any batch is drawn
            self.tracker().load_state_dict(self._pending)
            self._pending = None


def _match_epoch_length(trainer, sampler: SelectionBatchSampler) -> None:
    """Give Lightning this epoch's batch count.

    Lightning counts the training batches once, when it sets the loader up, and ends every
    epoch after that many. A sampler's epochs differ in length: under a budget its annealed
    last epochs are full passes, InfoBatch's pruned epochs are shorter than its full ones,
    and a run resumed in a short epoch would cut every later one to that length. So each
    epoch, once ``set_epoch`` has run, the count is set again from ``len(sampler)`` (with
    ``limit_train_batches`` applied as Lightning applies it), and with it an epoch-fraction
    ``val_check_interval``. Only for a training loader whose one DataLoader draws from this
    sampler; Lightning's loop attributes are private, so any other layout is left alone."""
    fit_loop = getattr(trainer, "fit_loop", None)
    combined = getattr(fit_loop, "_combined_loader", None)
    loaders = getattr(combined, "flattened", None)
    if not loaders or len(loaders) != 1 or getattr(loaders[0], "batch_sampler", None) is not sampler:
        return
    length, limit = len(sampler), trainer.limit_train_batches
    if isinstance(limit, int):
        count = min(length, limit)
    elif isinstance(limit, float):
        count = int(length * limit)
    else:
        return
    if count < 1 or count == fit_loop.max_batches:  # 0: a fractional limit Lightning itself refuses
        return
    combined.limits = [count]
    fit_loop.max_batches = count
    check = trainer.val_check_batch
    if isinstance(trainer.val_check_interval, float) and check is not None and check != float("inf"):
        trainer.val_check_batch = max(1, int(count * trainer.val_check_interval))


def _loaders(loaders) -> list:
    """The DataLoaders in what ``trainer.val_dataloaders`` and its kin return: one
    loader, or a list, tuple or dict of them (nested), or None."""
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return [leaf for value in loaders.values() for leaf in _loaders(value)]
    if isinstance(loaders, (list, tuple)):
        return [leaf for value in loaders for leaf in _loaders(value)]
    return [loaders]
