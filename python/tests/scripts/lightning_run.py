"""A tiny Lightning training job that checkpoints through RosetCheckpointIO.

Run by tests/test_lightning.py and tests/test_crash.py in a fresh process, the way
a user's training script runs. It follows the README snippet: a Client, a Trainer
with ``plugins=[RosetCheckpointIO(...)]`` and ``trainer.fit(model,
ckpt_path="latest")`` on every run (the first run finds no ref and starts fresh). The API is found through ROSET_API_URL and
ROSET_API_KEY (set by the test), so the environment defaults are exercised too.

Writes a JSON report (--out): the global step at train start (what was resumed),
the weights at train start, the step at the end and the commits made.

--crash-at-step N makes the checkpoint at step N hang inside torch.save, after
the checkpoint file has been created and opened on the mount, and drops a marker
file first; the test then SIGKILLs this process mid-checkpoint-write.
"""
import argparse
import importlib
import json
import os
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from roset import Client
from roset.integrations.pytorch import RosetCheckpointIO

p = argparse.ArgumentParser()
p.add_argument("--flavor", default="lightning.pytorch", choices=["lightning.pytorch", "pytorch_lightning"])
p.add_argument("--mount", required=True)
p.add_argument("--checkpoint-dir", required=True)
p.add_argument("--ref", required=True)
p.add_argument("--max-steps", type=int, required=True)
p.add_argument("--every", type=int, default=2)
p.add_argument("--save-top-k", type=int, default=-1)
p.add_argument("--monitor", default=None, help="ModelCheckpoint monitor (e.g. step, with --mode max: keep the newest)")
p.add_argument("--mode", default="min")
p.add_argument("--crash-at-step", type=int, default=None)
p.add_argument("--marker", default=None)
p.add_argument("--root", required=True, help="Trainer default_root_dir (logs), outside the mount")
p.add_argument("--out", required=True)
args = p.parse_args()

pl = importlib.import_module(args.flavor)
Trainer = pl.Trainer
ModelCheckpoint = pl.callbacks.ModelCheckpoint


class Hang:
    """Pickling this hangs torch.save after the checkpoint file was opened."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        raise SystemExit("should have been killed")


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint):
        if args.crash_at_step is not None and self.trainer.global_step == args.crash_at_step:
            checkpoint["hang"] = Hang(args.marker)


class Report(pl.Callback):
    def __init__(self):
        self.start_step = None
        self.start_weights = None

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step
        self.start_weights = pl_module.layer.weight.detach().flatten().tolist()


torch.manual_seed(0)
data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
loader = DataLoader(data, batch_size=4)

# The README snippet, as a user writes it (api_url/api_key come from ROSET_* here).
client = Client()
plugin = RosetCheckpointIO(
    client=client,
    mount_path=args.mount,
    checkpoint_dir=args.checkpoint_dir,
    update_ref=args.ref,
)
report = Report()
trainer = Trainer(
    plugins=[plugin],
    callbacks=[
        ModelCheckpoint(every_n_train_steps=args.every, save_top_k=args.save_top_k, monitor=args.monitor, mode=args.mode),
        report,
    ],
    max_steps=args.max_steps,
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    default_root_dir=args.root,
)
model = Tiny()
# Resume from the ref, always: on the first run it does not exist yet and
# training starts from scratch.
trainer.fit(model, loader, ckpt_path=args.ref)

with open(args.out, "w") as f:
    json.dump(
        {
            "flavor": args.flavor,
            "start_step": report.start_step,
            "start_weights": report.start_weights,
            "end_step": trainer.global_step,
            "commits": [c.id for c in plugin.commits],
            "paths": [c.path for c in plugin.commits],
        },
        f,
    )
print("done", trainer.global_step, file=sys.stderr)
