"""A torch.distributed job (gloo, CPU) whose ranks each write their own shard of one
checkpoint folder, each through its own Roset mount; world rank zero commits only
after every rank has finished writing.

Run by tests/test_torchrun.py under ``python -m torch.distributed.run --standalone
--nproc_per_node 2``, as a user's training script runs under torchrun.

Modes (``--mode``):
  hf   a ``transformers.Trainer`` (a tiny module, DDP over gloo)
       with ``RosetTrainerCallback``. A callback listed before it writes
       ``shard-<rank>.pt`` into each ``checkpoint-N`` on every rank (the Trainer
       itself writes ``rng_state_<rank>.pth`` per rank, and the model, optimizer
       and state on rank zero only). The Roset callback's barrier is what makes
       rank zero wait for the other ranks.
  dcp  the plain pattern of a PyTorch DCP (or FSDP/DeepSpeed) user: rank zero
       creates ``step-N``, every rank ``torch.save``s ``shard-<rank>.pt`` into it,
       ``dist.barrier()``, then rank zero commits with the client and moves the ref.

Phases (``--phase``):
  save    the job above. Rank 1 sleeps ``--slow-rank-delay`` seconds before it
          writes each shard, so a commit that did not wait for it would miss it.
  resume  a new job: every rank resolves the ref, reads its own files of the
          committed folder through ``ROSET_RESUME_MOUNT`` and checks them byte for
          byte (sha256 of what the save wrote, and of the manifest), then loads
          its shard. In hf mode the Trainer also resumes from the folder (each
          rank loads its ``rng_state_<rank>.pth``) and trains two more steps.

Environment:
  ROSET_API_URL, ROSET_API_KEY  the API (the control plane, for several nodes).
  ROSET_RANK_MOUNTS   comma-separated mountpoints: rank r writes through entry r;
                      a single entry serves every rank.
  ROSET_RESUME_MOUNT  the mountpoint the resume phase reads through.
``--rel`` is the mount-relative folder the checkpoints go under; it is the same
folder on every mount.

Written under ``--side-dir`` (outside every mount):
  shards/<checkpoint>/rank<r>.json  {"file", "sha256", "size"} of rank r's shard
  save.json        (rank 0) the commits made, in order: [{"id", "path"}]
  resume-rank<r>.json  what rank r read back, and in hf mode the resumed steps
"""
import argparse
import hashlib
import io
import json
import os
import sys
import time

import torch
import torch.distributed as dist

from roset import Client

p = argparse.ArgumentParser()
p.add_argument("--mode", required=True, choices=["hf", "dcp"])
p.add_argument("--phase", required=True, choices=["save", "resume"])
p.add_argument("--rel", required=True, help="mount-relative folder for the checkpoints, e.g. /runs/a")
p.add_argument("--ref", required=True)
p.add_argument("--side-dir", required=True)
p.add_argument("--slow-rank-delay", type=float, default=1.5)
p.add_argument("--saves", type=int, default=2)
args = p.parse_args()

RANK = int(os.environ["RANK"])
WORLD = int(os.environ["WORLD_SIZE"])
SAVE_EVERY = 2


def mount_for(rank):
    mounts = [m for m in os.environ["ROSET_RANK_MOUNTS"].split(",") if m]
    if len(mounts) == 1:
        return mounts[0]
    if len(mounts) < WORLD:
        raise SystemExit(f"ROSET_RANK_MOUNTS has {len(mounts)} entries for {WORLD} ranks")
    return mounts[rank]


def side(*parts):
    path = os.path.join(args.side_dir, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def shard_state(rank, step):
    """What rank ``rank`` saves at ``step``: deterministic, so a resume can recompute it."""
    g = torch.Generator().manual_seed(1000 * rank + step)
    return {"rank": rank, "step": step, "weights": torch.randn(64, 32, generator=g)}


def write_shard(folder, step):
    """Write this rank's shard into ``folder`` (on this rank's mount); record its sha256."""
    if RANK == 1:
        time.sleep(args.slow_rank_delay)
    buf = io.BytesIO()
    torch.save(shard_state(RANK, step), buf)
    data = buf.getvalue()
    name = f"shard-{RANK}.pt"
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    write_json(side("shards", os.path.basename(folder), f"rank{RANK}.json"),
               {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})


# --------------------------------------------------------------------- dcp


def dcp_save(client):
    base = mount_for(RANK) + args.rel
    commits = []
    for step in range(SAVE_EVERY, SAVE_EVERY * args.saves + 1, SAVE_EVERY):
        folder = f"{base}/step-{step}"
        if RANK == 0:
            os.makedirs(folder)
        dist.barrier()  # the folder exists before any rank writes into it
        write_shard(folder, step)
        # Every rank has closed its shard: only now may rank zero commit.
        dist.barrier()
        if RANK == 0:
            node = client.resolve_path(f"{args.rel}/step-{step}")
            commit = client.commit(node.id, message=f"dcp step {step}")
            commit = client.wait_for_commit(commit.id)
            client.update_ref(args.ref, commit.id)
            commits.append({"id": commit.id, "path": commit.path})
    if RANK == 0:
        write_json(side("save.json"), {"commits": commits})


# --------------------------------------------------------------------- hf


def make_trainer(output_dir, callbacks, max_steps, save_steps, save):
    # Name the device for accelerate: otherwise a multi-process CPU job picks one
    # with torch.cpu.device_count(), which torch has only from 2.1 (Debian's is 1.13).
    os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")
    from transformers import Trainer, TrainingArguments

    # A plain module, not a PreTrainedModel: the Trainer takes any module whose
    # forward returns {"loss": ...}. (A tiny GPT-2 cannot be wrapped in DDP over
    # gloo with torch 1.13: gloo does not broadcast its boolean attention-mask buffer.)
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(8, 1)

        def forward(self, x, labels):
            return {"loss": torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), labels)}

    class Points(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"x": torch.randn(8, generator=g), "labels": torch.randn((), generator=g)}

    torch.manual_seed(0)
    model = Tiny()

    targs = TrainingArguments(
        output_dir=output_dir,
        save_strategy="steps" if save else "no",
        save_steps=save_steps,
        max_steps=max_steps,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo",
        disable_tqdm=True,
        logging_strategy="no",
    )
    return Trainer(model=model, args=targs, train_dataset=Points(), callbacks=callbacks)


def hf_save(client):
    from transformers import TrainerCallback

    from roset.integrations.huggingface import RosetTrainerCallback

    class RankShard(TrainerCallback):
        """Every rank writes its own shard into the checkpoint the Trainer just saved."""

        def on_save(self, targs, state, control, **kwargs):
            write_shard(os.path.join(targs.output_dir, f"checkpoint-{state.global_step}"), state.global_step)

    roset_cb = RosetTrainerCallback(client=client, update_ref=args.ref, async_commit=False)
    # RankShard first: callbacks run in list order, and Roset's on_save holds the barrier.
    trainer = make_trainer(mount_for(RANK) + args.rel + "/checkpoints", [RankShard(), roset_cb],
                           max_steps=SAVE_EVERY * args.saves, save_steps=SAVE_EVERY, save=True)
    if not (dist.is_available() and dist.is_initialized()):
        raise SystemExit("the Trainer did not initialise torch.distributed")
    trainer.train()
    if RANK == 0:
        write_json(side("save.json"), {"commits": [{"id": c.id, "path": c.path} for c in roset_cb.commits]})


# --------------------------------------------------------------------- resume


def sha256_of(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha256(data).hexdigest(), data


def resume(client):
    mount = os.environ["ROSET_RESUME_MOUNT"]
    ref = client.get_ref(args.ref)
    if ref is None:
        raise SystemExit(f"ref {args.ref!r} does not exist")
    folder = mount + ref.commit.path
    manifest = {f.path: f.sha256 for f in client.get_manifest(ref.commit_id).files}
    checkpoint = os.path.basename(ref.commit.path)
    step = int(checkpoint.rsplit("-", 1)[1])
    with open(side("shards", checkpoint, f"rank{RANK}.json")) as f:
        wrote = json.load(f)
    own = [wrote["file"]] + ([f"rng_state_{RANK}.pth"] if args.mode == "hf" else [])
    read = {}
    for name in own:
        digest, data = sha256_of(os.path.join(folder, name))
        read[name] = {"sha256": digest, "manifest_sha256": manifest.get(name), "size": len(data)}
        if name == wrote["file"]:
            if digest != wrote["sha256"]:
                raise SystemExit(f"rank {RANK}: {name} read back with sha256 {digest}, written as {wrote['sha256']}")
            loaded = torch.load(io.BytesIO(data))
            expected = shard_state(RANK, step)
            if loaded["rank"] != RANK or loaded["step"] != step or not torch.equal(loaded["weights"], expected["weights"]):
                raise SystemExit(f"rank {RANK}: {name} does not hold what rank {RANK} saved at step {step}")
        if digest != manifest.get(name):
            raise SystemExit(f"rank {RANK}: {name} read back with sha256 {digest}, manifest says {manifest.get(name)}")
    report = {"commit": ref.commit_id, "path": ref.commit.path, "read": read}
    if args.mode == "hf":
        from transformers import TrainerCallback

        steps = []

        class Steps(TrainerCallback):
            def on_step_end(self, targs, state, control, **kwargs):
                steps.append(state.global_step)

        trainer = make_trainer(os.path.join(args.side_dir, "hf-resume-out"), [Steps()], max_steps=step + 2,
                               save_steps=SAVE_EVERY, save=False)
        trainer.train(resume_from_checkpoint=folder)
        report["resumed_steps"] = steps
    write_json(side(f"resume-rank{RANK}.json"), report)


def main():
    client = Client()  # ROSET_API_URL / ROSET_API_KEY
    if args.phase == "resume" or args.mode == "dcp":
        dist.init_process_group("gloo")
    try:
        if args.phase == "resume":
            resume(client)
        elif args.mode == "dcp":
            dcp_save(client)
        else:
            hf_save(client)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    print(f"rank {RANK}: {args.mode} {args.phase} done", file=sys.stderr)


main()
