"""A real Ray Train run (local, CPU workers) that commits through process_checkpoint.

Run by tests/test_ray.py in a fresh process, as a user's driver script runs (Ray
pickles ``train_func`` by value from ``__main__``). It follows the README snippet:
the callback is built on the driver, captured by ``train_func``, and each worker
calls ``callback.process_checkpoint(checkpoint_dir, step=...)`` after the
checkpoint is written; only world rank zero commits. Rank zero writes the model;
every rank also writes its own ``shard-<rank>.pt`` into the same folder, rank 1 a
second late, so the commit holds rank 1's shard only if rank zero waited for it
(the callback's barrier).

The API is found through ROSET_API_URL and ROSET_API_KEY, which Ray passes on to
its workers with the driver's environment.
"""
import argparse
import json
import os
import tempfile
import time

import ray
import ray.train
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from roset import Client
from roset.integrations.ray import RosetRayTrainCallback

p = argparse.ArgumentParser()
p.add_argument("--mount", required=True)
p.add_argument("--checkpoint-dir", required=True, help="mount-relative folder for the step-N folders")
p.add_argument("--ref", required=True)
p.add_argument("--workers", type=int, default=2)
p.add_argument("--steps", type=int, default=2)
p.add_argument("--out", required=True)
args = p.parse_args()

# The README snippet.
client = Client()
callback = RosetRayTrainCallback(client=client, update_ref=args.ref)
base = args.mount.rstrip("/") + args.checkpoint_dir


def save_checkpoint(checkpoint_dir, model, step):
    os.makedirs(checkpoint_dir, exist_ok=True)
    with open(os.path.join(checkpoint_dir, "model.pt"), "wb") as f:
        torch.save({"step": step, "model": model.state_dict()}, f)


def train_func(config):
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    model = ray.train.torch.prepare_model(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(1, config["steps"] + 1):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        checkpoint_dir = f"{config['base']}/step-{step}"
        if rank == 0:
            inner = model.module if hasattr(model, "module") else model
            save_checkpoint(checkpoint_dir, inner, step)
        if rank == 1:
            time.sleep(1.0)
        os.makedirs(checkpoint_dir, exist_ok=True)
        with open(os.path.join(checkpoint_dir, f"shard-{rank}.pt"), "wb") as f:
            torch.save({"rank": rank, "step": step}, f)
        # Every rank calls it; only rank zero commits (and returns the commit).
        commit = callback.process_checkpoint(checkpoint_dir, step=step)
        assert (commit is not None) == (rank == 0), (rank, commit)
        ray.train.report({"step": step, "rank": rank, "commit": commit.id if commit else None})


ray.init(num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=True)
try:
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"steps": args.steps, "base": base},
        scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=False),
        run_config=RunConfig(storage_path=tempfile.mkdtemp(prefix="ray-results-"), name="roset-ray-test"),
    )
    result = trainer.fit()
    error = getattr(result, "error", None)
    with open(args.out, "w") as f:
        json.dump({"error": repr(error) if error else None}, f)
finally:
    ray.shutdown()
