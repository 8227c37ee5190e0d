"""Run by tests/test_integrations_lightning.py: a Lightning Trainer with strategy="ddp"
on two CPU processes (gloo) and use_distributed_sampler=False; each rank saves the
batches it trained on and its sampler state. Lightning's launcher starts rank 1 by
running this script again. Usage (support.workers.run_worker): python -m support.lightning_ddp_worker OUT_DIR"""

import os
import sys
import warnings

import torch

from d2ace_ext.integrations.lightning import SelectionCallback

from . import lightning_parts as parts

warnings.filterwarnings("ignore", message=".*does not have many workers.*")

if __name__ == "__main__":
    out_dir = sys.argv[1]
    module = parts.TinyModule(stand_in=True)
    trainer = parts.trainer(out_dir, [SelectionCallback()], strategy="ddp", devices=2, use_distributed_sampler=False)
    trainer.fit(module)
    torch.save(
        {"seen": module.seen, "state": module.sampler.state_dict(), "replicas": module.sampler.num_replicas},
        os.path.join(out_dir, f"rank{trainer.global_rank}.pt"),
    )
