"""Lightning through a real mount (acceptance 2 of issue 4).

A real CPU ``Trainer`` with a tiny model and ``RosetCheckpointIO`` saves twice;
each save is a completed commit and the ref points at the second; then a NEW
process runs ``trainer.fit(model, ckpt_path=<ref>)`` and resumes at the saved
global step with the saved weights. Run for both Lightning flavours: the
``lightning`` package and ``pytorch_lightning`` (the README snippet's import).
"""
import errno
import os

import pytest

from conftest import need_module, read_json, run_script

pytestmark = [pytest.mark.daemon, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _lightning():
    need_module("torch")
    need_module("lightning")
    need_module("pytorch_lightning")


def _checkpoint_weights(local_file):
    import torch

    with open(local_file, "rb") as f:
        ckpt = torch.load(f, map_location="cpu")
    return ckpt["global_step"], ckpt["state_dict"]["layer.weight"].flatten().tolist()


@pytest.mark.parametrize("flavor,ref_name", [("lightning.pytorch", None), ("pytorch_lightning", "latest")])
def test_two_saves_commit_and_a_new_process_resumes_from_the_ref(daemon, client, workdir, unique, tmp_path, flavor, ref_name):
    local, rel = workdir
    ref = ref_name or f"latest-{unique}"
    common = ["--flavor", flavor, "--mount", daemon.mountpoint, "--checkpoint-dir", f"{rel}/checkpoints",
              "--ref", ref, "--root", tmp_path / "root"]

    # 1. Train 4 steps, checkpoint every 2: two saves. The script passes
    # ckpt_path=<ref> already, and the ref does not exist yet: a fresh start.
    assert client.get_ref(ref) is None
    run_script("lightning_run.py", common + ["--max-steps", 4, "--out", tmp_path / "first.json"], daemon.env())
    first = read_json(tmp_path / "first.json")
    assert first["start_step"] == 0
    assert first["end_step"] == 4 and len(first["commits"]) == 2, first
    commits = [client.get_commit(cid) for cid in first["commits"]]
    assert all(c.status == "completed" for c in commits)
    assert [c.path for c in commits] == [f"{rel}/checkpoints/epoch=0-step=2", f"{rel}/checkpoints/epoch=0-step=4"]
    for c in commits:
        node = client.get_node(c.node_id)
        assert node.state == "committed" and node.commit_id == c.id
        assert [f.path for f in client.get_manifest(c.id).files] == [os.path.basename(c.path) + ".ckpt"]

    latest = client.get_ref(ref)
    assert latest.commit_id == commits[1].id and latest.commit.path == commits[1].path
    moves = client.get_ref_log(ref)
    assert [m.to_commit_id for m in moves[-2:]] == [commits[0].id, commits[1].id]
    assert moves[-1].from_commit_id == commits[0].id

    # The committed checkpoint is immutable through the mount.
    ckpt_file = f"{daemon.mountpoint}{commits[1].path}/epoch=0-step=4.ckpt"
    with pytest.raises(OSError) as e:
        open(ckpt_file, "ab").close()
    assert e.value.errno == errno.EROFS
    saved_step, saved_weights = _checkpoint_weights(ckpt_file)
    assert saved_step == 4

    # 2. A new process resumes with ckpt_path=<ref> and trains on to step 6.
    run_script("lightning_run.py", common + ["--max-steps", 6, "--out", tmp_path / "resume.json"], daemon.env())
    resumed = read_json(tmp_path / "resume.json")
    assert resumed["start_step"] == 4, resumed
    assert resumed["start_weights"] == pytest.approx(saved_weights)
    assert resumed["end_step"] == 6 and len(resumed["commits"]) == 1
    assert client.get_ref(ref).commit_id == resumed["commits"][0]
    assert resumed["paths"] == [f"{rel}/checkpoints/epoch=0-step=6"]


@pytest.mark.parametrize("flavor", ["lightning.pytorch", "pytorch_lightning"])
def test_save_top_k_soft_deletes_committed_checkpoints_and_keeps_the_ref(daemon, client, workdir, unique, tmp_path, flavor):
    """ModelCheckpoint(save_top_k=2, monitor="step", mode="max") over 5 saves:
    Lightning removes each checkpoint that leaves the top 2 through
    CheckpointIO.remove_checkpoint, which soft-deletes its committed folder. The
    namespace ends with the newest 2, history keeps all 5 commits, and the ref
    resolves to the newest, which a new process resumes from."""
    local, rel = workdir
    ref = f"topk-{unique}"
    common = ["--flavor", flavor, "--mount", daemon.mountpoint, "--checkpoint-dir", f"{rel}/checkpoints",
              "--ref", ref, "--root", tmp_path / "root", "--save-top-k", 2, "--monitor", "step", "--mode", "max"]
    run_script("lightning_run.py", common + ["--max-steps", 10, "--out", tmp_path / "run.json"], daemon.env())
    run = read_json(tmp_path / "run.json")
    paths = [f"{rel}/checkpoints/epoch=0-step={s}" for s in (2, 4, 6, 8, 10)]
    assert run["paths"] == paths and len(run["commits"]) == 5, run

    assert sorted(os.listdir(f"{local}/checkpoints")) == ["epoch=0-step=10", "epoch=0-step=8"]
    history = {c.id: c for c in client.list_commits()}
    for cid, path in zip(run["commits"], paths):
        assert cid in history and history[cid].status == "completed" and history[cid].path == path
    for cid in run["commits"][:3]:
        assert client.get_node(history[cid].node_id).deleted_at is not None
    for cid in run["commits"][3:]:
        node = client.get_node(history[cid].node_id)
        assert node.deleted_at is None and node.state == "committed" and node.commit_id == cid

    latest = client.get_ref(ref)
    assert latest.commit_id == run["commits"][-1] and latest.commit.path == paths[-1]
    assert [m.to_commit_id for m in client.get_ref_log(ref)] == run["commits"]
    step, _ = _checkpoint_weights(f"{daemon.mountpoint}{paths[-1]}/epoch=0-step=10.ckpt")
    assert step == 10
    # A new process resumes from the ref.
    run_script("lightning_run.py", common + ["--max-steps", 12, "--out", tmp_path / "resume.json"], daemon.env())
    resumed = read_json(tmp_path / "resume.json")
    assert resumed["start_step"] == 10, resumed
    assert client.get_ref(ref).commit_id == resumed["commits"][-1]


def test_checkpoint_io_unit_behaviour(daemon, client, workdir, unique):
    """save/load/remove of the plugin itself, in process."""
    import torch
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from roset.integrations.pytorch import RosetCheckpointIO

    local, rel = workdir
    ref = f"ckio-{unique}"
    io = RosetCheckpointIO(client=client, mount_path=daemon.mountpoint, checkpoint_dir=f"{rel}/ck", update_ref=ref)
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, "/anywhere/step1.ckpt")
    io.save_checkpoint({"global_step": 2, "w": torch.full((3,), 2.0)}, "/anywhere/step2.ckpt")
    # Same Lightning path again (e.g. last.ckpt): a fresh folder, never the committed one.
    io.save_checkpoint({"global_step": 3, "w": torch.full((3,), 3.0)}, "/anywhere/step2.ckpt")
    assert [c.path for c in io.commits] == [f"{rel}/ck/step1", f"{rel}/ck/step2", f"{rel}/ck/step2-1"]
    assert client.get_ref(ref).commit_id == io.commits[-1].id

    assert io.load_checkpoint(ref)["global_step"] == 3
    assert io.load_checkpoint(f"{daemon.mountpoint}{rel}/ck/step1/step1.ckpt")["global_step"] == 1
    # A ref that does not exist yet: nothing to restore (falsy), not an error.
    fresh = io.load_checkpoint(f"no-such-ref-{unique}")
    assert not fresh and isinstance(fresh, dict)
    with pytest.raises(FileNotFoundError):
        io.load_checkpoint(f"/nowhere/{unique}.ckpt")

    io.remove_checkpoint("/anywhere/step1.ckpt")
    assert client.resolve_path(f"{rel}/ck/step1") is None
    assert client.get_node(io.commits[0].node_id).deleted_at is not None
    # The folder the ref points at is never removed.
    io.remove_checkpoint("/anywhere/step2.ckpt")
    assert client.resolve_path(f"{rel}/ck/step2-1") is not None

    # Only global rank zero writes and commits.
    old = getattr(rank_zero_only, "rank", 0)
    rank_zero_only.rank = 1
    try:
        io.save_checkpoint({"global_step": 9}, "/anywhere/rank1.ckpt")
    finally:
        rank_zero_only.rank = old
    assert client.resolve_path(f"{rel}/ck/rank1") is None and len(io.commits) == 3
