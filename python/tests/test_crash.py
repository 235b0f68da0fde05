"""Crash mid-checkpoint (acceptance 5 of issue 4).

A Lightning training process checkpoints through the mount with
``RosetCheckpointIO``. Its second checkpoint hangs inside ``torch.save`` after the
checkpoint folder and file were created on the mount and the file opened for
writing; the test SIGKILLs the process right there. Then:

- the ref still points at the first (complete) checkpoint;
- the half-written folder is still STAGING, was never committed, and no ref
  points at it;
- a NEW process resuming with ``ckpt_path=<ref>`` starts from the first
  checkpoint's global step with its weights, and its own next checkpoint goes to
  a fresh folder, never into the stale one.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import SCRIPTS_DIR, need_module, read_json, run_script

pytestmark = [pytest.mark.daemon, pytest.mark.slow]


def test_sigkill_mid_checkpoint_write_resumes_from_the_previous_checkpoint(daemon, client, workdir, unique, tmp_path):
    need_module("torch")
    need_module("lightning")
    import torch

    local, rel = workdir
    ref = f"crash-{unique}"
    marker = tmp_path / "hanging"
    common = ["--mount", daemon.mountpoint, "--checkpoint-dir", f"{rel}/checkpoints", "--ref", ref,
              "--root", tmp_path / "root"]
    cmd = [sys.executable, str(SCRIPTS_DIR / "lightning_run.py")] + [str(a) for a in common] + [
        "--max-steps", "6", "--crash-at-step", "4", "--marker", str(marker), "--out", str(tmp_path / "never.json")]
    proc = subprocess.Popen(cmd, env=daemon.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")
                pytest.fail(f"training exited ({proc.returncode}) before the hanging checkpoint:\n{out[-5000:]}")
            assert time.monotonic() < deadline, "the training run never reached its second checkpoint"
            time.sleep(0.05)
        partial_local = f"{local}/checkpoints/epoch=0-step=4"
        # Mid-write: the checkpoint folder and file exist on the mount, the file is open.
        assert os.path.isfile(f"{partial_local}/epoch=0-step=4.ckpt")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert not (tmp_path / "never.json").exists()

    # The ref still points at the first, complete checkpoint.
    latest = client.get_ref(ref)
    assert latest is not None and latest.commit.path == f"{rel}/checkpoints/epoch=0-step=2"
    assert latest.commit.is_completed

    # The partial folder is STAGING, was never committed, and no ref points at it.
    partial = client.resolve_path(f"{rel}/checkpoints/epoch=0-step=4")
    assert partial is not None and partial.state == "staging" and partial.commit_id is None
    assert client.list_commits(node_id=partial.id) == []
    for r in client.list_refs():
        assert r.commit is None or not r.commit.path.startswith(partial.path), r

    # Every file of the referenced commit matches its manifest (complete bytes).
    manifest = client.get_manifest(latest.commit_id)
    import hashlib

    for f in manifest.files:
        with open(f"{daemon.mountpoint}{manifest.path}/{f.path}", "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == f.sha256
    with open(f"{daemon.mountpoint}{manifest.path}/epoch=0-step=2.ckpt", "rb") as fh:
        step2 = torch.load(fh, map_location="cpu")
    assert step2["global_step"] == 2

    # A new process resumes from the ref: step 2, with step 2's weights.
    run_script("lightning_run.py", common + ["--max-steps", 4, "--out", tmp_path / "resume.json"], daemon.env())
    resumed = read_json(tmp_path / "resume.json")
    assert resumed["start_step"] == 2, resumed
    assert resumed["start_weights"] == pytest.approx(step2["state_dict"]["layer.weight"].flatten().tolist())
    assert resumed["end_step"] == 4
    # Its step-4 checkpoint went to a fresh folder; the stale one is untouched.
    assert resumed["paths"] == [f"{rel}/checkpoints/epoch=0-step=4-1"]
    assert client.get_ref(ref).commit_id == resumed["commits"][0]
    assert client.resolve_path(partial.path).state == "staging"
