"""D2ACE batches in a Hugging Face Accelerate loop, with an exact save_state / load_state.

    python examples/accelerate_train.py                                  # one process
    accelerate launch --cpu --num_processes 2 examples/accelerate_train.py
    python examples/accelerate_train.py --stop-after 5                   # interrupted after 5 epochs
    python examples/accelerate_train.py --resume state/                  # continues it exactly

prepare_loader keeps our sampler, which already yields this process's shard (plain
accelerator.prepare(loader) would shard it again); LoopCheckpoint saves the sampler
state as the loop consumed it, although Accelerate's loader iterates one batch ahead.
"""

import argparse

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from d2ace_ext import D2ACEConfig, D2ACESampler, IndexedDataset
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.integrations import LoopCheckpoint
from d2ace_ext.integrations.accelerate import prepare_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--resume", default=None, help="a folder written by accelerator.save_state")
    parser.add_argument("--save", default="state", help="where to save the state after each epoch")
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop after this many epochs (a demo interruption)"
    )
    args = parser.parse_args()

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    x, y = make_multilabel(n=2400, d=100, q=14, cardinality=4.0, seed=0)
    # Built after Accelerator(): the sampler reads rank and world size from the process group.
    sampler = D2ACESampler(y, 128, x, config=D2ACEConfig.preset("paper").scaled_to(args.epochs))
    loader = prepare_loader(accelerator, DataLoader(IndexedDataset(TensorDataset(x, y)), batch_sampler=sampler))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(100, 256), torch.nn.ReLU(), torch.nn.Linear(256, 14))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    tracker = LoopCheckpoint(sampler)
    accelerator.register_for_checkpointing(tracker)
    if args.resume:
        accelerator.load_state(args.resume)

    for epoch in range(tracker.resume_epoch, args.epochs):
        loader.set_epoch(epoch)  # on the prepared loader: it forwards the epoch to the sampler
        total, seen = 0.0, 0
        for index, xb, yb in loader:
            logits = model(xb)
            loss = F.binary_cross_entropy_with_logits(logits, yb)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            tracker.update(index, logits.detach(), yb)  # sampler.update + the consumed-batch count
            total, seen = total + float(loss.detach()) * len(index), seen + len(index)
        accelerator.save_state(args.save)
        accelerator.print(f"epoch {epoch}: mean training loss {total / seen:.4f} (this process)")
        if args.stop_after is not None and epoch + 1 >= args.stop_after:
            break


if __name__ == "__main__":
    main()
