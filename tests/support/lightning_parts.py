"""A tiny LightningModule driving a D2ACE sampler through SelectionCallback, shared by
tests/test_integrations_lightning.py and its DDP worker (imports Lightning)."""

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from d2ace_ext import D2ACEConfig, D2ACESampler, IndexedDataset

CONFIG = D2ACEConfig(num_epochs=5, warmup_epochs=2, t_start=2, t_end=4, num_neighbors=3)
N, Q, D, BATCH, SEED = 60, 4, 5, 8, 3  # 8 batches per epoch; epochs 0-1 shuffled, 2+ weighted


def problem():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, D, generator=g), (torch.rand(N, Q, generator=g) < 0.4).float()


def stand_in_logits(index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Logits that depend only on (index, epoch), so records match across process layouts."""
    return torch.sin(index.double().unsqueeze(1) * 1.3 + epoch * 0.7 + torch.arange(Q)).float() * 3


class TinyModule(L.LightningModule):
    """A linear model; its sampler is built in setup() (after the process group exists)."""

    def __init__(self, stand_in: bool = False, num_workers: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(D, Q)
        self.x, self.y = problem()
        self.stand_in, self.num_workers = stand_in, num_workers
        self.sampler = None
        self.seen: list = []

    def setup(self, stage: str) -> None:
        if self.sampler is None:
            self.sampler = D2ACESampler(self.y, BATCH, self.x, config=CONFIG, seed=SEED)

    def train_dataloader(self):
        return DataLoader(
            IndexedDataset(TensorDataset(self.x, self.y)), batch_sampler=self.sampler, num_workers=self.num_workers
        )

    def training_step(self, batch, batch_idx):
        index, x, y = batch
        logits = self.net(x)
        self.seen.append(index.tolist())
        recorded = stand_in_logits(index, self.current_epoch) if self.stand_in else logits
        return {
            "loss": F.binary_cross_entropy_with_logits(logits, y),
            "indices": index,
            "logits": recorded,
            "targets": y,
        }

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def trainer(root, callbacks, **options) -> L.Trainer:
    settings = dict(
        max_epochs=CONFIG.num_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    settings.update(options)
    return L.Trainer(callbacks=callbacks, **settings)
