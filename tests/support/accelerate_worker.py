"""Run by tests/test_integrations_accelerate.py: an Accelerate training loop with a D2ACE
sampler on WORLD processes (gloo on CPU when WORLD > 1). Each process saves the batches
it trained on, its sampler state, and what plain ``accelerator.prepare(loader)`` does
to the sampler. Usage (support.workers.run_worker): python -m support.accelerate_worker OUT_DIR WORLD"""

import os
import socket
import sys

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from d2ace_ext import D2ACEConfig, D2ACESampler, IndexedDataset

CONFIG = D2ACEConfig(num_epochs=5, warmup_epochs=2, t_start=2, t_end=4, num_neighbors=3)
N, Q, D, BATCH, SEED, EPOCHS = 60, 4, 5, 8, 3, 4


def problem():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, D, generator=g), (torch.rand(N, Q, generator=g) < 0.4).float()


def stand_in_logits(index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Logits that depend only on (index, epoch), so records match across process layouts."""
    return torch.sin(index.double().unsqueeze(1) * 1.3 + epoch * 0.7 + torch.arange(Q)).float() * 3


def train(accelerator, loader, sampler, model, optimizer, tracker, epochs, start=0):
    seen = []
    for epoch in range(start, epochs):
        loader.set_epoch(epoch)
        for index, x, y in loader:
            logits = model(x)
            accelerator.backward(F.binary_cross_entropy_with_logits(logits, y))
            optimizer.step()
            optimizer.zero_grad()
            tracker.update(index, stand_in_logits(index.cpu(), epoch), y)
            seen.append(index.tolist())
    return seen


def setup(accelerate_prepare: bool = False):
    """(accelerator, loader, sampler, model, optimizer, tracker) for one run."""
    from accelerate import Accelerator

    from d2ace_ext.integrations import LoopCheckpoint
    from d2ace_ext.integrations.accelerate import prepare_loader

    accelerator = Accelerator(cpu=True)
    x, y = problem()
    sampler = D2ACESampler(y, BATCH, x, config=CONFIG, seed=SEED)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_sampler=sampler)
    loader = accelerator.prepare(loader) if accelerate_prepare else prepare_loader(accelerator, loader)
    torch.manual_seed(0)
    model, optimizer = torch.nn.Linear(D, Q), None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    tracker = LoopCheckpoint(sampler)
    accelerator.register_for_checkpointing(tracker)
    return accelerator, loader, sampler, model, optimizer, tracker


def rank_main(rank: int, world: int, out_dir: str, port: int) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
    )
    from d2ace_ext.integrations.accelerate import check_loader

    accelerator, loader, sampler, model, optimizer, tracker = setup()
    same_sampler = loader.batch_sampler is sampler
    seen = train(accelerator, loader, sampler, model, optimizer, tracker, EPOCHS)
    state = sampler.state_dict()
    # What plain accelerator.prepare(loader) does with the same kind of loader.
    x, y = problem()
    plain_sampler = D2ACESampler(y, BATCH, x, config=CONFIG, seed=SEED)
    plain = accelerator.prepare(DataLoader(IndexedDataset(TensorDataset(x, y)), batch_sampler=plain_sampler))
    try:
        check_loader(plain)
        resharded = False
    except ValueError:
        resharded = True
    plain_batches = [index.tolist() for index, _, _ in plain]
    torch.save(
        {
            "seen": seen,
            "state": state,
            "replicas": sampler.num_replicas,
            "same_sampler": same_sampler,
            "resharded": resharded,
            "plain_batches": plain_batches,
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    out_dir, world = sys.argv[1], int(sys.argv[2])
    mp.spawn(rank_main, args=(world, out_dir, free_port()), nprocs=world, join=True)
