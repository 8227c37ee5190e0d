"""DataLoaders of the image protocol: the training rows in the selector's batches, in
order for evaluation, and HST's prototype pass, with seeded augmentation.

Exact resume with DataLoader workers: each training image's random crop and flip are
drawn from a generator seeded by (run seed, epoch, position in the epoch), in whichever
process loads it, and the workers' base seed comes from a private generator, not the
main process's. So the images an epoch trains on depend neither on ``workers`` nor on
whether the run was resumed, and no worker RNG state needs saving.
"""

from __future__ import annotations

import contextlib
import random

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from ..datasets.images.registry import ImageData
from ..validation import seed64

#: seed64 streams of a run seed: the training images' augmentation, the loader's base seed,
#: the augmentation of HST's prototype passes.
AUGMENT_STREAM, LOADER_STREAM, PROTOTYPE_STREAM = -4, -5, -6  # (balance: -2, dihcl: -3; epochs: >= 0)


@contextlib.contextmanager
def _seeded(seed: int):
    """Python's and torch's CPU global generators (those torchvision's random transforms
    and ``files.MultiScaleCrop`` draw from) seeded from ``seed`` inside. In the main
    process (no workers) both are restored after, so the run's own streams are untouched;
    a worker's streams serve only its transforms and are left as they are (restoring
    them would cost more than the seeding)."""
    restore = get_worker_info() is None
    if restore:
        python_state, torch_state = random.getstate(), torch.get_rng_state()
    random.seed(seed)
    torch.default_generator.manual_seed(seed)  # the CPU generator only: torch.manual_seed visits every backend
    try:
        yield
    finally:
        if restore:
            random.setstate(python_state)
            torch.set_rng_state(torch_state)


class _Rows(Dataset):
    """Item i = (i, x, y) of ``base[rows[i]]``: sampler indices count the training rows.
    An item ``(seed, i)`` (from :class:`_SeededBatches`) loads row i under that seed."""

    def __init__(self, base: Dataset, rows: torch.Tensor) -> None:
        self.base, self.rows = base, rows

    def __len__(self) -> int:
        return self.rows.numel()

    def __getitem__(self, item):
        if isinstance(item, tuple):
            seed, i = item
            with _seeded(seed):
                x, y = self.base[int(self.rows[i])]
        else:
            i = item
            x, y = self.base[int(self.rows[i])]
        return i, x, y


class _SeededBatches:
    """The sampler's batches with an augmentation seed per item: item k of epoch e of a
    run seeded s is loaded under ``seed64(seed64(seed64(s, AUGMENT_STREAM), e), k)``.
    ``set_epoch`` forwards to the sampler; length, state and updates stay the sampler's."""

    def __init__(self, sampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        stream, position = seed64(seed64(self.seed % 2**63, AUGMENT_STREAM), self.epoch), 0
        for batch in self.sampler:
            yield [(seed64(stream, position + k), int(i)) for k, i in enumerate(batch)]
            position += len(batch)


class _SeededPass:
    """Batches of ``batch_size`` consecutive positions 0 ... n-1, item k loaded under
    ``seed64(seed64(seed64(s, PROTOTYPE_STREAM), epoch), k)``: a pass over the training
    images under their random transform that is the same with any worker count or resume."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        stream = seed64(seed64(self.seed % 2**63, PROTOTYPE_STREAM), self.epoch)
        for start in range(0, self.n, self.batch_size):
            yield [(seed64(stream, k), k) for k in range(start, min(self.n, start + self.batch_size))]


class _BatchedRows(_Rows):
    """For in-memory sets (``get_batch``): a whole batch in one call, no collate."""

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return (index, *self.base.get_batch(self.rows[index]))


def _identity(batch):
    return batch


def loader(
    base: Dataset,
    rows: torch.Tensor,
    *,
    batch_sampler=None,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "cpu",
    persistent: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """(index, x, y) batches of ``base`` restricted to ``rows``, in order or by ``batch_sampler``;
    ``persistent`` keeps the workers between epochs (the sampler itself runs in this process);
    ``generator`` draws the workers' base seed (default: the global generator)."""
    batched = hasattr(base, "get_batch")
    dataset = (_BatchedRows if batched else _Rows)(base, rows)
    extra = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size}
    return DataLoader(
        dataset,
        collate_fn=_identity if batched else default_collate,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
        persistent_workers=persistent and workers > 0,
        generator=generator,
        **extra,
    )


def training_loader(data: ImageData, rows: torch.Tensor, sampler, seed: int, workers: int, device: str):
    """(loader, the object to call set_epoch on). Image files get per-item augmentation
    seeds; the loader gets a private generator whenever the global one's stream could
    differ after a resume: persistent workers draw their base seed once per process, not
    once per epoch. In-memory sets with no workers keep the global draw (and so the
    numbers of the runs recorded before this rule)."""
    batches = sampler if hasattr(data.train, "get_batch") else _SeededBatches(sampler, seed)
    private = workers > 0 or batches is not sampler
    generator = torch.Generator().manual_seed(seed64(seed % 2**63, LOADER_STREAM)) if private else None
    return loader(
        data.train, rows, batch_sampler=batches, workers=workers, device=device, persistent=True, generator=generator
    ), batches


def eval_base(data: ImageData) -> Dataset:
    """The training images under the test transform (the training set itself when deterministic)."""
    return data.train_eval if data.train_eval is not None else data.train


def prototype_pass(model, data: ImageData, rows: torch.Tensor, seed: int, epoch: int, workers: int, device: str):
    """HST's prototype pass: (x, y) on ``device`` of the training rows ``rows`` in order,
    under the training transform when the model asks for it (HST's release) and the
    images have a random one, else under the test transform."""
    if getattr(model, "prototype_augment", False) and not hasattr(data.train, "get_batch"):
        batches = loader(
            data.train, rows, batch_sampler=_SeededPass(rows.numel(), 64, seed, epoch), workers=workers, device=device
        )
    else:
        batches = loader(eval_base(data), rows, batch_size=64, workers=workers, device=device)
    return ((x.to(device), y.to(device)) for _, x, y in batches)
