"""Training and testing one (image set, model, selector, seed) run under the image protocol.

Loop: the selector's batches over the training rows through a DataLoader (workers for
image files), Adam, bf16 autocast on CUDA, the sampler fed each step's training logits,
mAP on the validation rows after every epoch, test metrics (mAP + the tabular ones) from
the selected epoch's weights. After every epoch the model, optimiser, LR schedule,
sampler, RNG states and history are saved together to
``<results_dir>/checkpoints/<run>__<protocol digest>.pt``; a rerun resumes from there,
and the file is removed once the run's record is written.

Exact resume with DataLoader workers: each training image's random crop and flip are
drawn from a generator seeded by (run seed, epoch, position in the epoch), in whichever
process loads it, and the workers' base seed comes from a private generator, not the
main process's. So the images an epoch trains on depend neither on ``workers`` nor on
whether the run was resumed, and no worker RNG state needs saving.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import random
import re
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data._utils.collate import default_collate
from tqdm.auto import tqdm

from ..datasets.images.registry import ImageData
from ..metrics import evaluate, voc_interpolated_map
from ..models import make_model
from ..models.registry import IMAGE_MODELS
from ..validation import seed64
from .experiment import RunKey
from .selection_loss import selection_objective
from .image_protocol import ImageProtocol, build_image_sampler, mean_average_precision, model_options, needs_features


CHECKPOINT_FOLDER = "checkpoints"
#: seed64 streams of a run seed: the training images' augmentation, the loader's base seed,
#: the augmentation of HST's prototype passes.
_AUGMENT_STREAM, _LOADER_STREAM, _PROTOTYPE_STREAM = -4, -5, -6   # (balance: -2, dihcl: -3; epochs: >= 0)


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
    torch.default_generator.manual_seed(seed)   # the CPU generator only: torch.manual_seed visits every backend
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
    run seeded s is loaded under ``seed64(seed64(seed64(s, _AUGMENT_STREAM), e), k)``.
    ``set_epoch`` forwards to the sampler; length, state and updates stay the sampler's."""

    def __init__(self, sampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        stream, position = seed64(seed64(self.seed % 2**63, _AUGMENT_STREAM), self.epoch), 0
        for batch in self.sampler:
            yield [(seed64(stream, position + k), int(i)) for k, i in enumerate(batch)]
            position += len(batch)


class _SeededPass:
    """Batches of ``batch_size`` consecutive positions 0 ... n-1, item k loaded under
    ``seed64(seed64(seed64(s, _PROTOTYPE_STREAM), epoch), k)``: a pass over the training
    images under their random transform that is the same with any worker count or resume."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        stream = seed64(seed64(self.seed % 2**63, _PROTOTYPE_STREAM), self.epoch)
        for start in range(0, self.n, self.batch_size):
            yield [(seed64(stream, k), k) for k in range(start, min(self.n, start + self.batch_size))]


class _BatchedRows(_Rows):
    """For in-memory sets (``get_batch``): a whole batch in one call, no collate."""

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return (index, *self.base.get_batch(self.rows[index]))


def _identity(batch):
    return batch


def loader(base: Dataset, rows: torch.Tensor, *, batch_sampler=None, batch_size: int = 64, workers: int = 0,
           device: str = "cpu", persistent: bool = False, generator: torch.Generator | None = None) -> DataLoader:
    """(index, x, y) batches of ``base`` restricted to ``rows``, in order or by ``batch_sampler``;
    ``persistent`` keeps the workers between epochs (the sampler itself runs in this process);
    ``generator`` draws the workers' base seed (default: the global generator)."""
    batched = hasattr(base, "get_batch")
    dataset = (_BatchedRows if batched else _Rows)(base, rows)
    extra = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size}
    return DataLoader(dataset, collate_fn=_identity if batched else default_collate, num_workers=workers,
                      pin_memory=str(device).startswith("cuda"), persistent_workers=persistent and workers > 0,
                      generator=generator, **extra)


def _training_loader(data: ImageData, rows: torch.Tensor, sampler, seed: int, workers: int, device: str):
    """(loader, the object to call set_epoch on). Image files get per-item augmentation
    seeds; the loader gets a private generator whenever the global one's stream could
    differ after a resume: persistent workers draw their base seed once per process, not
    once per epoch. In-memory sets with no workers keep the global draw (and so the
    numbers of the runs recorded before this rule)."""
    batches = sampler if hasattr(data.train, "get_batch") else _SeededBatches(sampler, seed)
    private = workers > 0 or batches is not sampler
    generator = torch.Generator().manual_seed(seed64(seed % 2**63, _LOADER_STREAM)) if private else None
    return loader(data.train, rows, batch_sampler=batches, workers=workers, device=device, persistent=True,
                  generator=generator), batches


def _autocast(device: str, amp: bool):
    enabled = amp and str(device).startswith("cuda")
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled) if enabled else torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict(model, base: Dataset, rows: torch.Tensor, device: str, workers: int = 0, amp: bool = True,
            batch_size: int = 64) -> torch.Tensor:
    """Eval-mode probabilities (m, q) on the CPU for ``base[rows]``."""
    model.eval()
    parts = []
    for _, x, _ in loader(base, rows, batch_size=batch_size, workers=workers, device=device):
        with _autocast(device, amp):
            parts.append(torch.sigmoid(model(x.to(device, non_blocking=True)).float()).cpu())
    return torch.cat(parts)


@torch.no_grad()
def backbone_features(model, base: Dataset, rows: torch.Tensor, device: str, workers: int = 0) -> torch.Tensor:
    """(n, C) average-pooled backbone features of the initial model: the input space of
    the K-NN selectors for image files (ImageNet semantics when a checkpoint is loaded)."""
    model.eval()
    parts = [model.backbone(x.to(device)).float().mean((2, 3)).cpu()
             for _, x, _ in loader(base, rows, batch_size=64, workers=workers, device=device)]
    return torch.cat(parts)


def split_rows(data: ImageData, protocol: ImageProtocol) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, validation rows): a seeded ``val_fraction`` held out under
    model_selection "val", else every row trains and none validates."""
    n = data.train_labels.shape[0]
    if protocol.model_selection != "val":
        return torch.arange(n), torch.arange(0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(protocol.seed + 7919))
    cut = max(1, int(round(n * protocol.val_fraction)))
    return order[cut:].sort().values, order[:cut].sort().values


def _eval_base(data: ImageData) -> Dataset:
    """The training images under the test transform (the training set itself when deterministic)."""
    return data.train_eval if data.train_eval is not None else data.train


def checkpoint_path(results_dir: str, key: RunKey, digest: str) -> str:
    """``<results_dir>/checkpoints/<run>__<digest>.pt``: runs under other settings never
    share a file, and a data set given as a path is named by its file name and a hash of
    the path, so the file never lands beside the data (an absolute path would swallow
    ``results_dir`` in ``os.path.join``)."""
    dataset = key.dataset
    if not re.fullmatch(r"[A-Za-z0-9._-]+", dataset):
        tail = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(dataset.rstrip("/\\"))) or "data"
        dataset = f"{tail}-{hashlib.sha256(dataset.encode()).hexdigest()[:8]}"
    stem = RunKey(**{**key.to_dict(), "dataset": dataset}).stem()
    return os.path.join(results_dir, CHECKPOINT_FOLDER, f"{stem}__{digest}.pt")


def _legacy_checkpoint(results_dir: str, key: RunKey) -> str | None:
    """Where checkpoints were written before they carried the digest (plain names only):
    read once, so a run stopped before the rename still resumes."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", key.dataset):
        return None
    return os.path.join(results_dir, CHECKPOINT_FOLDER, key.stem() + ".pt")


def _save(path: str, state: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)   # a kill mid-write never leaves a torn checkpoint


def run_image(key: RunKey, data: ImageData, protocol: ImageProtocol, *, device: str = "cpu",
              results_dir: str | None = None, workers: int = 0, progress: bool = True,
              stop_after: int | None = None) -> dict | None:
    """Train, select, test; returns the results-file record. ``key.fold`` is the seed
    index (model init and sampler seed ``protocol.seed + key.fold``). ``stop_after``: end
    after that many epochs in this call (None when stopped early; for tests of resume)."""
    started = time.perf_counter()
    seed = protocol.seed + key.fold
    torch.manual_seed(seed)
    random.seed(seed)
    fit_rows, val_rows = split_rows(data, protocol)
    fit_y = data.train_labels[fit_rows]
    in_features = 3 if data.kind == "image" else int(data.train.get_batch(torch.tensor([0]))[0].shape[1])
    # label-row files (embeddings=, graph=) are matched to the data set's label names
    names = {"label_names": list(data.label_names)} if key.model in IMAGE_MODELS else {}
    model = make_model(key.model, in_features, data.num_labels, train_labels=fit_y,
                       **{**names, **model_options(protocol, key.model)}).to(device)
    grad_clip = getattr(model, "grad_clip", None)   # ML-GCN's released engine: 10 (off by default)
    features = None
    if needs_features(key.selector, protocol, key.preset):
        features = (data.knn_features[fit_rows] if data.knn_features is not None else
                    backbone_features(model, _eval_base(data), fit_rows, device, workers))
    sampler = build_image_sampler(key.selector, fit_y.to(device), features, protocol, seed, key.preset, device)
    train_loader, batches = _training_loader(data, fit_rows, sampler, seed, workers, device)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=protocol.lr,
                                 betas=(0.9, 0.999), weight_decay=protocol.weight_decay)
    step = protocol.lr_step or protocol.epochs + 1
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=step, gamma=0.1)
    history = {"epoch": [], "train_loss": [], "val_map": [], "loop_seconds": [], "selection_seconds": [], "steps": []}
    best = {"score": -np.inf, "epoch": -1, "state": None}
    first_epoch, ckpt, legacy = 0, None, None
    if results_dir is not None:
        ckpt = checkpoint_path(results_dir, key, protocol.digest())
        legacy = _legacy_checkpoint(results_dir, key)
        source = next((path for path in (ckpt, legacy) if path and os.path.exists(path)), None)
        state = torch.load(source, map_location="cpu", weights_only=False) if source else {}
        if state.get("protocol") == protocol.digest():
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
            sampler.load_state_dict(state["sampler"])
            history, best = state["history"], state["best"]
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            random.setstate(state["python_rng"])
            first_epoch = state["epoch"] + 1
        else:
            source = None   # another protocol's legacy file: not ours to remove
        legacy = legacy if source == legacy else None
    eval_base = _eval_base(data)

    def feature_pass(epoch: int):
        """HST's prototype pass: the training rows in order, under the training transform
        when the model asks for it (HST's release) and the images have a random one."""
        if getattr(model, "prototype_augment", False) and not hasattr(data.train, "get_batch"):
            batches = loader(data.train, fit_rows, batch_sampler=_SeededPass(fit_rows.numel(), 64, seed, epoch),
                             workers=workers, device=device)
        else:
            batches = loader(eval_base, fit_rows, batch_size=64, workers=workers, device=device)
        return ((x.to(device), y.to(device)) for _, x, y in batches)
    selecting = protocol.model_selection
    bar = tqdm(range(first_epoch, protocol.epochs), desc=f"{key.dataset} {key.model} {key.selector} s{key.fold}",
               disable=not progress, leave=False, dynamic_ncols=True, initial=first_epoch, total=protocol.epochs)
    for epoch in bar:
        batches.set_epoch(epoch)
        if hasattr(model, "start_epoch"):
            model.start_epoch(epoch, len(sampler), lambda: feature_pass(epoch))
        model.train()
        total, seen, select_before, loop_start = 0.0, 0, sampler.overhead_seconds, time.perf_counter()
        for index, x, y in train_loader:
            if index.numel() < 2:   # BatchNorm cannot train on one image: a lone last image sits this epoch out
                continue
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device, protocol.amp):
                logits, loss = selection_objective(model, sampler, index, x, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimiser.step()
            sampler.update(index, logits.detach().float(), y)
            total += float(loss.detach()) * index.numel()
            seen += index.numel()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        history["loop_seconds"].append(time.perf_counter() - loop_start)
        history["selection_seconds"].append(sampler.overhead_seconds - select_before)
        history["steps"].append(len(sampler))
        schedule.step()
        score = float("nan")
        if selecting in ("val", "test"):
            base, rows, labels, ignore = ((data.train, val_rows, data.train_labels[val_rows], None) if selecting == "val"
                                          else (data.test, torch.arange(len(data.test)), data.test_labels, data.test_ignore))
            base = eval_base if selecting == "val" else base
            score = mean_average_precision(labels, predict(model, base, rows, device, workers, protocol.amp), ignore)
            if score > best["score"]:
                best = {"score": score, "epoch": epoch, "state": copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})}
        history["epoch"].append(epoch)
        history["train_loss"].append(total / max(1, seen))
        history["val_map"].append(score)
        bar.set_postfix(map=f"{score:.4f}", loss=f"{total / max(1, seen):.4f}")
        if ckpt is not None:
            _save(ckpt, {"protocol": protocol.digest(), "epoch": epoch, "model": model.state_dict(),
                         "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                         "sampler": sampler.state_dict(), "history": history, "best": best,
                         "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                         "cuda_rng": torch.cuda.get_rng_state_all() if str(device).startswith("cuda") else None})
            if legacy is not None and os.path.exists(legacy):
                os.remove(legacy)   # its state now lives under the new name
        if stop_after is not None and epoch + 1 - first_epoch >= stop_after and epoch + 1 < protocol.epochs:
            bar.close()
            return None
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        best["epoch"] = protocol.epochs - 1
    test_rows = torch.arange(len(data.test))
    probs = predict(model, data.test, test_rows, device, workers, protocol.amp)
    metrics = {"map": mean_average_precision(data.test_labels, probs, data.test_ignore),
               "map_voc_interpolated": voc_interpolated_map(data.test_labels, probs, data.test_ignore),
               **evaluate(data.test_labels, probs)}
    loop, selection = sum(history["loop_seconds"]), sum(history["selection_seconds"])
    record = {
        "key": key.to_dict(), "metrics": metrics, "best_epoch": best["epoch"],
        "best_val_map": None if not np.isfinite(best["score"]) else best["score"],
        "seconds": time.perf_counter() - started, "selection_seconds": selection, "loop_seconds": loop,
        "steps": int(sum(history["steps"])),
        "shape": {"train": int(fit_rows.numel()), "val": int(val_rows.numel()), "test": len(data.test),
                  "q": data.num_labels},
        "history": history, "inputs": protocol.inputs, "label_names": list(data.label_names),
    }
    if ckpt is not None and os.path.exists(ckpt):
        os.remove(ckpt)
    return record
