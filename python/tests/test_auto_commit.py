"""Commits with zero code changes: a stock PyTorch DCP save, with no Roset import, into
a mount started with ``--auto-commit '<folders>/*:@dcp:latest'``.

Proves, with the real framework: DCP's last write is ``.metadata`` (written as
``.metadata.tmp``, fsynced and renamed), so the preset commits the folder once the save
is complete and ``latest`` then names it; the checkpoint loads back through the mount
byte for byte; a save SIGKILLed after its data and before its metadata leaves ``latest``
on the previous checkpoint and its folder uncommitted. Rules set with the client's
``add_auto_commit_rule`` on a running mount apply at once, beside the daemon's own, and
stop once removed; a bad rule is ``INVALID_AUTO_COMMIT_RULE`` and changes nothing.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import SCRIPTS_DIR, need_module, run_script, start_daemon
from roset.exceptions import RosetAPIError, RosetConflictError


def _wait(what, f, timeout=60):
    end = time.time() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_stock_dcp_save_is_committed_and_a_killed_one_is_not(tmp_path_factory):
    need_module("torch")
    d = start_daemon(tmp_path_factory.mktemp("roset-py-auto-"), extra=["--auto-commit", "ckpt/*:@dcp:latest"])
    try:
        client = d.client()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSET_")}
        step1 = os.path.join(d.mountpoint, "ckpt", "step-1")
        saved = run_script("dcp_stock_save.py", ["save", step1, 1], env).stdout.split()[-1]
        ref = _wait("latest", lambda: client.get_ref("latest"))
        commit = client.get_commit(ref.commit_id)
        assert commit.status == "completed"
        node = client.resolve_path("/ckpt/step-1")
        assert node is not None and node.state == "committed"
        assert run_script("dcp_stock_save.py", ["load", step1], env).stdout.split()[-1] == saved

        # A save killed after its data, before its metadata: nothing commits it.
        step2 = os.path.join(d.mountpoint, "ckpt", "step-2")
        proc = subprocess.Popen([sys.executable, str(SCRIPTS_DIR / "dcp_stock_save.py"), "save", step2, "2"],
                                env={**env, "ROSET_TEST_PAUSE_BEFORE_METADATA": "1"}, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "data written"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert not os.path.exists(os.path.join(step2, ".metadata"))
        assert client.get_ref("latest").commit_id == ref.commit_id
        assert client.resolve_path("/ckpt/step-2").state == "staging"
    finally:
        d.stop()


def test_rules_set_through_the_client_apply_on_the_running_mount(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("roset-py-auto-api-"), extra=["--auto-commit", "flagged/*:READY"])
    try:
        client = d.client()
        assert client.get_auto_commit_rules().rules == []
        added = client.add_auto_commit_rule("api/*:DONE:api-latest")
        assert added.rules == ["api/*:DONE:api-latest"] and added.version == 1
        assert added.raw["rules"][0]["ref"] == "api-latest"
        with pytest.raises(RosetAPIError) as bad:
            client.add_auto_commit_rule("api/*:@nope")
        assert bad.value.code == "INVALID_AUTO_COMMIT_RULE" and bad.value.status == 400
        with pytest.raises(RosetConflictError) as stale:
            client.set_auto_commit_rules([], expected_version=0)
        assert stale.value.code == "AUTO_COMMIT_CONFLICT"

        folder = os.path.join(d.mountpoint, "api", "one")
        os.makedirs(folder)
        with open(os.path.join(folder, "weights.bin"), "wb") as f:
            f.write(b"weights")
        open(os.path.join(folder, "DONE"), "wb").close()
        ref = _wait("api-latest", lambda: client.get_ref("api-latest"))
        assert client.get_commit(ref.commit_id).path == "/api/one"

        assert client.remove_auto_commit_rule("api/*:DONE:api-latest").rules == []
        os.makedirs(os.path.join(d.mountpoint, "api", "two"))
        open(os.path.join(d.mountpoint, "api", "two", "DONE"), "wb").close()
        # Written after that marker: once the daemon's own rule committed this folder,
        # the marker's check has run.
        os.makedirs(os.path.join(d.mountpoint, "flagged", "a"))
        open(os.path.join(d.mountpoint, "flagged", "a", "READY"), "wb").close()
        _wait("flagged/a committed", lambda: (client.resolve_path("/flagged/a").state == "committed") or None)
        assert client.resolve_path("/api/two").state == "staging"
        assert client.get_ref("api-latest").commit_id == ref.commit_id
    finally:
        d.stop()
