"""Checkpoints of image runs: after every epoch the model, optimiser, LR schedule,
sampler, RNG states and history are saved together to
``<results_dir>/checkpoints/<run>__<protocol digest>.pt``; a rerun resumes from there,
and the file is removed once the run's record is written."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re

import torch

from .experiment import RunKey

CHECKPOINT_FOLDER = "checkpoints"


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
    """Write ``state`` to ``path`` whole or not at all: to ``path.tmp``, synced, then
    renamed over the last checkpoint (a kill mid-write leaves that one intact; without
    the sync a power loss could leave an empty file under the new name)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(path + ".tmp", path)
    if hasattr(os, "O_DIRECTORY"):  # the rename itself reaches the disk (POSIX only)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _load(path: str) -> dict:
    """The checkpoint at ``path``; a file that torch cannot read (cut short) is a ValueError
    naming it, since resuming from it is impossible and starting over is the user's call."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"the checkpoint {path} cannot be read ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
            "delete it to train this run from its first epoch"
        ) from None


class RunCheckpoint:
    """The checkpoint file of one run under the protocol with digest ``digest``: read by
    :meth:`restore`, written by :meth:`save` after every epoch, removed by :meth:`remove`."""

    def __init__(self, results_dir: str, key: RunKey, digest: str) -> None:
        self.path, self.digest = checkpoint_path(results_dir, key, digest), digest
        self.legacy = _legacy_checkpoint(results_dir, key)

    def restore(self, model, optimiser, schedule, sampler) -> tuple[int, dict, dict] | None:
        """Loads the saved state of this protocol's run into the objects given and the
        global RNGs; returns (first epoch to train, history, best) or None to start anew.
        A legacy file read here is removed at the next :meth:`save`; another protocol's
        legacy file is not ours to remove."""
        source = next((path for path in (self.path, self.legacy) if path and os.path.exists(path)), None)
        state = _load(source) if source else {}
        resumed = None
        if state.get("protocol") == self.digest:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
            sampler.load_state_dict(state["sampler"])
            history, best = state["history"], state["best"]
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            random.setstate(state["python_rng"])
            resumed = state["epoch"] + 1, history, best
        else:
            source = None
        self.legacy = self.legacy if source == self.legacy else None
        return resumed

    def save(self, epoch: int, model, optimiser, schedule, sampler, history: dict, best: dict, device: str) -> None:
        """The state after ``epoch``, with the global RNGs (CUDA's on a CUDA device)."""
        _save(
            self.path,
            {
                "protocol": self.digest,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "sampler": sampler.state_dict(),
                "history": history,
                "best": best,
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
                "cuda_rng": torch.cuda.get_rng_state_all() if str(device).startswith("cuda") else None,
            },
        )
        if self.legacy is not None and os.path.exists(self.legacy):
            os.remove(self.legacy)  # its state now lives under the new name

    def remove(self) -> None:
        """Deletes the file (the run's record is written)."""
        if os.path.exists(self.path):
            os.remove(self.path)
