"""Ray Train through a real mount (acceptance 4 of issue 4).

A real ``ray.train`` run, local, with two CPU workers (``TorchTrainer``, gloo),
writes a checkpoint per step into the mount on rank zero, plus a shard per rank
(rank 1's a second late), and calls ``RosetRayTrainCallback.process_checkpoint``
on every rank; rank zero commits, after every rank's shard is closed, and moves
the ref. The run happens in its own process (tests/scripts/ray_run.py).
"""
import pytest

from conftest import need_module, read_json, run_script

pytestmark = [pytest.mark.daemon, pytest.mark.slow]


def test_ray_train_commits_through_process_checkpoint(daemon, client, workdir, unique, tmp_path):
    need_module("torch")
    need_module("ray")
    need_module("ray.train.torch")
    local, rel = workdir
    ref = f"ray-{unique}"
    env = daemon.env()
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0")
    run_script(
        "ray_run.py",
        ["--mount", daemon.mountpoint, "--checkpoint-dir", f"{rel}/checkpoints", "--ref", ref,
         "--workers", 2, "--steps", 2, "--out", tmp_path / "ray.json"],
        env,
        timeout=400,
    )
    assert read_json(tmp_path / "ray.json")["error"] is None

    commits = []
    for step in (1, 2):
        node = client.resolve_path(f"{rel}/checkpoints/step-{step}")
        assert node is not None and node.state == "committed", node
        commit = client.get_commit(node.commit_id)
        files = sorted(f.path for f in client.get_manifest(commit.id).files)
        assert commit.is_completed and files == ["model.pt", "shard-0.pt", "shard-1.pt"], files
        commits.append(commit)
    # One commit per folder: the non-zero rank never committed.
    for c in commits:
        assert [x.id for x in client.list_commits(node_id=c.node_id)] == [c.id]

    latest = client.get_ref(ref)
    assert latest.commit_id == commits[-1].id
    assert [m.to_commit_id for m in client.get_ref_log(ref)] == [c.id for c in commits]
