"""D2ACE batches in a PyTorch Lightning run: SelectionCallback and a checkpoint resume.

    python examples/lightning_train.py                      # one CPU process
    python examples/lightning_train.py --devices 2          # DDP on two CPU processes (gloo)
    python examples/lightning_train.py --resume last.ckpt   # continue a run exactly

The LightningModule builds the sampler in setup() (under DDP that is after the process
group exists, so it shards by rank), returns {"loss", "indices", "logits", "targets"}
from training_step, and the Trainer keeps our sampler (use_distributed_sampler=False).
"""

import argparse

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from d2ace_ext import D2ACEConfig, D2ACESampler, IndexedDataset
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.integrations.lightning import SelectionCallback


class MultiLabelMLP(L.LightningModule):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.x, self.y = make_multilabel(n=2400, d=100, q=14, cardinality=4.0, seed=0)
        self.net = torch.nn.Sequential(torch.nn.Linear(100, 256), torch.nn.ReLU(), torch.nn.Linear(256, 14))
        self.config = D2ACEConfig.preset("paper").scaled_to(epochs)
        self.sampler = None

    def setup(self, stage: str) -> None:
        if self.sampler is None:
            self.sampler = D2ACESampler(self.y, 128, self.x, config=self.config)

    def train_dataloader(self):
        return DataLoader(IndexedDataset(TensorDataset(self.x, self.y)), batch_sampler=self.sampler)

    def training_step(self, batch, batch_idx):
        index, x, y = batch
        logits = self.net(x)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        self.log("loss", loss, prog_bar=True)
        return {"loss": loss, "indices": index, "logits": logits, "targets": y}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--resume", default=None, help="a checkpoint to continue from")
    args = parser.parse_args()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        use_distributed_sampler=False,
        logger=False,
        callbacks=[SelectionCallback(), ModelCheckpoint(dirpath="checkpoints", save_last=True)],
    )
    trainer.fit(MultiLabelMLP(args.epochs), ckpt_path=args.resume)


if __name__ == "__main__":
    main()
