"""Multi-rank checkpoints under torchrun: every rank's shard is in the commit.

tests/scripts/torchrun_shards.py runs as a two-process ``torch.distributed`` job
(gloo, CPU) under ``python -m torch.distributed.run --standalone
--nproc_per_node 2``. Each rank writes its own shard of one checkpoint folder
through its own mount, and rank 1 is slower (it sleeps 1.5 s before it writes),
so a commit that did not wait for every rank would miss rank 1's shard (or cut
it off: the seal makes the folder refuse new writes). Two modes:

- ``hf``: ``transformers.Trainer`` with ``RosetTrainerCallback``, whose barrier in
  ``on_save`` holds world zero until every rank is done;
- ``dcp``: the plain pattern of a DCP/FSDP user: ``torch.save`` per rank,
  ``dist.barrier()``, then ``client.commit`` on rank zero.

For each commit, its manifest must list both ranks' shards with the sha256 of
the bytes each rank wrote; then a second torchrun job resumes: every rank reads
its own files of the folder the ref names, byte for byte, through the resume
mount (and in ``hf`` mode the Trainer resumes from that folder).

The checks live in ``check_sharded_checkpoints``, which takes a
:class:`Topology`. Here the topology is one ``roset-mount`` serving both ranks and
the resume; a topology of several nodes (one agent mount per rank and another
for the resume, all agents of one ``roset serve``) runs the same checks.
"""
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import List

import pytest

from conftest import SCRIPTS_DIR, need_module, read_json

pytestmark = [pytest.mark.daemon, pytest.mark.slow]

SLOW_RANK_DELAY = 1.5


@dataclass
class Topology:
    """Where a distributed job's ranks write and where its resume reads.

    Attributes:
        rank_mounts: local mountpoints; rank r writes through ``rank_mounts[r]``
            (a single entry serves every rank). Entries may be mounts of different
            nodes: the checkpoint folder has the same mount-relative path on each.
        resume_mount: the local mountpoint the resume job reads through.
        api_url, api_key: the API every rank commits and resolves through (the
            daemon's own, or the control plane's when the mounts are its agents).
    """

    rank_mounts: List[str]
    resume_mount: str
    api_url: str
    api_key: str

    def client(self):
        import roset

        return roset.Client(api_url=self.api_url, api_key=self.api_key)

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSET_")}
        env.update(
            ROSET_API_URL=self.api_url,
            ROSET_API_KEY=self.api_key,
            ROSET_RANK_MOUNTS=",".join(self.rank_mounts),
            ROSET_RESUME_MOUNT=self.resume_mount,
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            WANDB_DISABLED="true",
        )
        return env


@pytest.fixture
def single_mount(daemon):
    """Both ranks and the resume on the session's one roset-mount."""
    return Topology([daemon.mountpoint], daemon.mountpoint, daemon.endpoint, daemon.api_key)


def torchrun(script_args, env, nproc=2, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc_per_node", str(nproc), str(SCRIPTS_DIR / "torchrun_shards.py")] + [str(a) for a in script_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"torchrun exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc


def check_sharded_checkpoints(mode: str, topology: Topology, unique: str, side_dir) -> None:
    """Run the save job and the resume job of ``mode`` on ``topology``, and check them.

    Saves go under the mount-relative folder ``/t-<unique>``, created here through
    the API; ``side_dir`` is a local folder outside every mount, where the ranks
    record the sha256 of what they wrote.
    """
    client = topology.client()
    rel = client.create_folder("/", f"t-{unique}").path
    ref = f"shards-{mode}-{unique}"
    common = ["--mode", mode, "--rel", rel, "--ref", ref, "--side-dir", side_dir]

    torchrun(common + ["--phase", "save", "--slow-rank-delay", SLOW_RANK_DELAY, "--saves", 2], topology.env())

    commits = [client.get_commit(c["id"]) for c in read_json(os.path.join(side_dir, "save.json"))["commits"]]
    names = ["checkpoint-2", "checkpoint-4"] if mode == "hf" else ["step-2", "step-4"]
    parent = f"{rel}/checkpoints" if mode == "hf" else rel
    assert [c.path for c in commits] == [f"{parent}/{n}" for n in names]
    for commit, name in zip(commits, names):
        assert commit.status == "completed", commit
        files = {f.path: f for f in client.get_manifest(commit.id).files}
        for rank in (0, 1):
            wrote = read_json(os.path.join(side_dir, "shards", name, f"rank{rank}.json"))
            assert wrote["file"] in files, f"{name}: rank {rank}'s shard is not in the commit: {sorted(files)}"
            assert files[wrote["file"]].sha256 == wrote["sha256"], (name, rank)
            assert files[wrote["file"]].size == wrote["size"], (name, rank)
        if mode == "hf":
            assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"} <= set(files)
        # One commit per folder: only world zero committed.
        assert [x.id for x in client.list_commits(node_id=commit.node_id)] == [commit.id]
    latest = client.get_ref(ref)
    assert latest.commit_id == commits[-1].id
    assert [m.to_commit_id for m in client.get_ref_log(ref)] == [c.id for c in commits]

    # A new job resumes from the ref through the resume mount.
    torchrun(common + ["--phase", "resume"], topology.env())
    for rank in (0, 1):
        resumed = read_json(os.path.join(side_dir, f"resume-rank{rank}.json"))
        assert resumed["commit"] == commits[-1].id
        wrote = read_json(os.path.join(side_dir, "shards", names[-1], f"rank{rank}.json"))
        assert resumed["read"][wrote["file"]]["sha256"] == wrote["sha256"]
        # And the bytes on the resume mount are the bytes of the manifest.
        path = topology.resume_mount + commits[-1].path + "/" + wrote["file"]
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == wrote["sha256"]
        if mode == "hf":
            assert resumed["read"][f"rng_state_{rank}.pth"]["sha256"] == resumed["read"][f"rng_state_{rank}.pth"]["manifest_sha256"]
            assert resumed["resumed_steps"] == [5, 6], resumed


@pytest.mark.parametrize("mode", ["hf", "dcp"])
def test_every_ranks_shard_is_in_the_commit(single_mount, unique, tmp_path, mode):
    need_module("torch.distributed.run")
    if mode == "hf":
        need_module("transformers")
        need_module("accelerate")
    check_sharded_checkpoints(mode, single_mount, unique, str(tmp_path / "side"))
