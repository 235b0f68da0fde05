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
:class:`Topology`, and run on two:

- ``single_mount``: the session's one ``roset-mount`` serves both ranks and the
  resume;
- ``multi_node``: the ``cluster`` fixture's ``roset serve`` and three agents of it,
  standing for three nodes. Rank 0 writes through node 1's mount, rank 1 through
  node 2's, and every API call (commits, refs, manifests) goes to the serve. So
  each commit seals the folder on two nodes and must gather both nodes' files into
  one manifest. The resume reads through node 3, whose cache never held the bytes:
  they come from the store, and land in node 3's object cache under their sha256
  only then.

``test_a_ranks_mount_root_is_its_own_nodes_mountpoint`` checks the step the
integrations take before they commit: a local folder under any node's mount maps
to that node's mountpoint and to one mount-relative path, even though the serve
reports the mountpoints of every node.
"""
import dataclasses
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Optional

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
        resume_cache_dir: the ``--cache-dir`` of the resume mount's daemon, when
            that daemon is fresh: committed objects it reads are cached there as
            ``objects/<sha256>``, so the check can prove it had none of the bytes
            before the resume and read them from the store.
    """

    rank_mounts: List[str]
    resume_mount: str
    api_url: str
    api_key: str
    resume_cache_dir: Optional[str] = None

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


@pytest.fixture
def multi_node(cluster):
    """Three nodes of one ``roset serve``: rank r writes through node r + 1, the
    resume reads through node 3 (fresh), the API is the serve's."""
    node1, node2, node3 = cluster.nodes
    return Topology([node1.mountpoint, node2.mountpoint], node3.mountpoint,
                    cluster.serve.endpoint, cluster.serve.api_key, resume_cache_dir=node3.cache_dir)


def cached_object(cache_dir: str, sha256: str) -> bool:
    return os.path.exists(os.path.join(cache_dir, "objects", sha256))


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

    if topology.resume_cache_dir:
        # The resume node has never seen these bytes (it wrote none of them).
        for rank in (0, 1):
            wrote = read_json(os.path.join(side_dir, "shards", names[-1], f"rank{rank}.json"))
            assert not cached_object(topology.resume_cache_dir, wrote["sha256"]), (rank, "cached before the resume")

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
        if topology.resume_cache_dir:
            # Read from the store into the resume node's cache, under its sha256.
            assert cached_object(topology.resume_cache_dir, wrote["sha256"]), (rank, "not fetched into the cache")
        if mode == "hf":
            assert resumed["read"][f"rng_state_{rank}.pth"]["sha256"] == resumed["read"][f"rng_state_{rank}.pth"]["manifest_sha256"]
            assert resumed["resumed_steps"] == [5, 6], resumed


@pytest.mark.parametrize("topology", ["single_mount", "multi_node"])
@pytest.mark.parametrize("mode", ["hf", "dcp"])
def test_every_ranks_shard_is_in_the_commit(request, unique, tmp_path, mode, topology):
    need_module("torch.distributed.run")
    if mode == "hf":
        need_module("transformers")
        need_module("accelerate")
    check_sharded_checkpoints(mode, request.getfixturevalue(topology), unique, str(tmp_path / "side"))


def test_a_ranks_mount_root_is_its_own_nodes_mountpoint(cluster, unique):
    """The integrations turn a local checkpoint folder into the mount-relative path
    they commit through the mountpoint that holds it. The serve reports the
    mountpoints of every node; on each node the folder must map to that node's
    own mount, and the same mount-relative path."""
    from roset._config import resolve_config
    from roset.integrations._common import find_mount_root, to_mount_path

    client = cluster.client()
    rel = client.create_folder("/", f"t-{unique}").path
    client.create_folder(rel, "runs")
    reported = client.list_mounts()[0].mountpoints
    assert sorted(reported) == sorted(d.mountpoint for d in cluster.nodes)
    for node in cluster.nodes:
        # A client with no settings on the node finds the serve through the
        # agent's state directory.
        cfg = resolve_config(env={"ROSET_STATE_DIR": node.state_dir})
        assert (cfg.api_url, cfg.api_key) == (cluster.serve.endpoint, cluster.serve.api_key)
        local = f"{node.mountpoint}{rel}/runs"
        assert os.path.isdir(local)
        assert find_mount_root(local, client) == node.mountpoint
        assert to_mount_path(local, find_mount_root(local, client)) == f"{rel}/runs"

    # Another node may mount at a path that is only a folder of the mount on this
    # one (node 1 mounts at M, a node elsewhere at M/t-x/runs): that mountpoint is
    # not this node's, so it must not decide the path committed here.
    node1 = cluster.nodes[0]
    elsewhere = f"{node1.mountpoint}{rel}/runs"

    class OtherNodeToo:
        mount_id = client.mount_id

        def list_mounts(self):
            return [dataclasses.replace(m, mountpoints=m.mountpoints + [elsewhere]) for m in client.list_mounts()]

    local = f"{elsewhere}/step-1"
    assert find_mount_root(local, OtherNodeToo()) == node1.mountpoint
    assert to_mount_path(local, node1.mountpoint) == f"{rel}/runs/step-1"
