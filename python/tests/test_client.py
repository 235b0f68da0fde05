"""Client suite against a real `roset-mount` (acceptance 1 of issue 4).

Covers every method of the README's API reference on the embedded default
daemon, the error types (not found, stale compare-and-swap, a failed commit,
401), the timeout error and the environment-variable defaults. Files are written
through the FUSE mount exactly as a training job would.
"""
import errno
import os
import time

import pytest

import roset
from roset.exceptions import (
    RosetAPIError,
    RosetAuthenticationError,
    RosetCommitFailedError,
    RosetConflictError,
    RosetError,
    RosetNotFoundError,
    RosetTimeoutError,
)

pytestmark = pytest.mark.daemon


def write(path, data=b"x" * 1024):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def committed_folder(client, daemon, rel, name="model.pt", data=b"weights"):
    write(daemon.mountpoint + rel + "/" + name, data)
    node = client.resolve_path(rel)
    commit = client.wait_for_commit(client.commit(node.id, message=f"commit {rel}").id, timeout=30)
    return node, commit


# ---------------------------------------------------------------- nodes


def test_health_and_mounts(client, daemon):
    assert client.health()["status"] == "ok"
    mounts = client.list_mounts()
    assert [m.id for m in mounts] == [daemon.mount_id]
    assert os.path.realpath(daemon.mountpoint) in [os.path.realpath(p) for p in mounts[0].mountpoints]


def test_create_folder_get_node_resolve_path(client, workdir):
    local, rel = workdir
    folder = client.create_folder(rel, "step-1000")
    assert isinstance(folder, roset.Node)
    assert (folder.path, folder.name, folder.type, folder.state) == (f"{rel}/step-1000", "step-1000", "folder", "staging")
    assert folder.commit_id is None and folder.deleted_at is None and folder.created_at is not None
    # The API and the mount are one namespace.
    assert os.path.isdir(f"{local}/step-1000")

    same = client.get_node(folder.id)
    assert same.id == folder.id and same.path == folder.path and same.mount_id == folder.mount_id

    assert client.resolve_path(f"{rel}/step-1000").id == folder.id
    assert client.resolve_path(f"{rel}/step-1000/").id == folder.id  # trailing slash is normalised
    assert client.resolve_path(f"{rel}/missing") is None

    parent = client.resolve_path(rel)
    child = client.create_folder(parent, "by-node")  # a Node works as the parent too
    assert child.parent_id == parent.id
    assert {n.name for n in client.list_children(parent.id)} == {"step-1000", "by-node"}
    # Pages of one follow nextCursor to the end.
    client.create_folder(rel, "third")
    assert sorted(n.name for n in client.list_children(parent.id, limit=1)) == ["by-node", "step-1000", "third"]


def test_create_folder_twice_is_a_conflict(client, workdir):
    _, rel = workdir
    client.create_folder(rel, "dup")
    with pytest.raises(RosetConflictError) as e:
        client.create_folder(rel, "dup")
    assert e.value.code == "NODE_EXISTS" and e.value.status == 409
    assert isinstance(e.value, RosetAPIError) and isinstance(e.value, RosetError)


def test_files_written_through_the_mount_are_nodes(client, daemon, workdir):
    local, rel = workdir
    write(f"{local}/ckpt/model.pt", b"a" * 4096)
    node = client.resolve_path(f"{rel}/ckpt/model.pt")
    assert node.type == "file"
    # The kernel sends FUSE RELEASE after close() has returned, and the daemon
    # records the size then: allow it a moment.
    deadline = time.monotonic() + 5
    while node.size != 4096 and time.monotonic() < deadline:
        time.sleep(0.05)
        node = client.resolve_path(f"{rel}/ckpt/model.pt")
    assert node.size == 4096


def test_delete_node_is_a_soft_delete(client, daemon, workdir):
    local, rel = workdir
    folder = client.create_folder(rel, "trash-me")
    deleted = client.delete_node(folder.id)
    assert deleted.id == folder.id and deleted.deleted_at is not None
    assert client.resolve_path(f"{rel}/trash-me") is None
    assert not os.path.exists(f"{local}/trash-me")


def test_not_found_errors(client):
    with pytest.raises(RosetNotFoundError) as e:
        client.get_node("node_doesnotexist")
    assert e.value.code == "NODE_NOT_FOUND" and e.value.status == 404
    with pytest.raises(RosetNotFoundError) as e:
        client.get_commit("cmt_doesnotexist")
    assert e.value.code == "COMMIT_NOT_FOUND"
    with pytest.raises(RosetNotFoundError):
        client.delete_node("node_doesnotexist")
    with pytest.raises(RosetNotFoundError):
        client.commit("node_doesnotexist")
    with pytest.raises(RosetNotFoundError) as e:
        client.get_commit_group("grp_doesnotexist")
    assert e.value.code == "GROUP_NOT_FOUND"


# -------------------------------------------------------------- commits


def test_commit_wait_get_commit_and_manifest(client, daemon, workdir):
    local, rel = workdir
    write(f"{local}/step-1/model.pt", b"m" * 5000)
    write(f"{local}/step-1/sub/opt.pt", b"o" * 300)
    folder = client.resolve_path(f"{rel}/step-1")

    t0 = time.monotonic()
    pending = client.commit(folder.id, message="Training step 1")
    assert time.monotonic() - t0 < 5
    assert isinstance(pending, roset.Commit)
    assert pending.node_id == folder.id and pending.path == f"{rel}/step-1" and pending.message == "Training step 1"
    assert pending.status in ("pending", "completed")

    done = client.wait_for_commit(pending.id)
    assert done.is_completed and done.error is None and done.completed_at is not None
    assert (done.stats.files, done.stats.bytes) == (2, 5300)

    again = client.get_commit(pending.id)
    assert again == done or again.status == "completed"

    node = client.get_node(folder.id)
    assert node.state == "committed" and node.commit_id == done.id

    manifest = client.get_manifest(done.id)
    assert manifest.path == f"{rel}/step-1"
    assert sorted((f.path, f.size) for f in manifest.files) == [("model.pt", 5000), ("sub/opt.pt", 300)]
    assert all(len(f.sha256) == 64 for f in manifest.files)
    # Block hashes: one BLAKE3 digest per 8 MiB block (one block each here).
    assert all(f.blocks is not None and f.blocks.alg == "blake3" and f.blocks.size == 8 << 20 for f in manifest.files)
    assert all(len(f.blocks.hashes) == 1 and len(f.blocks.hashes[0]) == 64 for f in manifest.files)

    assert done.id in [c.id for c in client.list_commits(node_id=folder.id)]
    assert done.id in [c.id for c in client.list_commits(status="completed", limit=1)]

    # Committed means immutable through the mount.
    with pytest.raises(OSError) as e:
        write(f"{local}/step-1/model.pt", b"overwrite")
    assert e.value.errno == errno.EROFS
    with open(f"{local}/step-1/model.pt", "rb") as f:
        assert f.read() == b"m" * 5000


def test_failed_commit_raises_with_the_commit_error_code(client, daemon, workdir):
    """A handle held open past the daemon's 2 s seal timeout fails the commit with OPEN_HANDLES."""
    local, rel = workdir
    os.makedirs(f"{local}/busy")
    f = open(f"{local}/busy/model.pt", "wb")
    try:
        f.write(b"partial")
        f.flush()
        folder = client.resolve_path(f"{rel}/busy")
        commit = client.commit(folder.id, message="will fail")
        with pytest.raises(RosetAPIError) as e:
            client.wait_for_commit(commit.id, timeout=30)
        assert isinstance(e.value, RosetCommitFailedError)
        assert e.value.code == "OPEN_HANDLES"
        assert e.value.commit.id == commit.id and e.value.commit.is_failed
        failed = client.get_commit(commit.id)
        assert failed.status == "failed" and failed.error.code == "OPEN_HANDLES"
    finally:
        f.close()
    # The folder went back to STAGING with its data, so it can be committed again.
    assert client.get_node(folder.id).state == "staging"
    ok = client.wait_for_commit(client.commit(folder.id).id, timeout=30)
    assert ok.is_completed and ok.stats.files == 1


def test_wait_for_commit_timeout_is_a_distinct_error(client, daemon, workdir):
    local, rel = workdir
    os.makedirs(f"{local}/slow")
    f = open(f"{local}/slow/model.pt", "wb")
    try:
        commit = client.commit(client.resolve_path(f"{rel}/slow").id)
        t0 = time.monotonic()
        with pytest.raises(RosetTimeoutError) as e:
            client.wait_for_commit(commit.id, timeout=0.3)
        assert time.monotonic() - t0 < 1.5
        assert isinstance(e.value, TimeoutError) and not isinstance(e.value, RosetAPIError)
        assert e.value.commit_id == commit.id and e.value.code == "TIMEOUT"
    finally:
        f.close()
    # Closing the handle lets the seal finish: the same commit completes.
    assert client.wait_for_commit(commit.id, timeout=30).is_completed


# ----------------------------------------------------------------- refs


def test_refs_update_get_cas_log_delete(client, daemon, workdir, unique):
    _, rel = workdir
    name = f"latest-{unique}"
    assert client.get_ref(name) is None

    _, c1 = committed_folder(client, daemon, f"{rel}/step-1")
    _, c2 = committed_folder(client, daemon, f"{rel}/step-2")

    ref = client.update_ref(name, c1.id)
    assert isinstance(ref, roset.Ref) and ref.name == name and ref.commit_id == c1.id

    got = client.get_ref(name)
    assert got.commit_id == c1.id and got.commit.path == f"{rel}/step-1" and got.commit.is_completed

    # Compare-and-swap: right expectation moves it, stale one is a conflict.
    assert client.update_ref(name, c2.id, expected_commit_id=c1.id).commit_id == c2.id
    with pytest.raises(RosetConflictError) as e:
        client.update_ref(name, c1.id, expected_commit_id=c1.id)
    assert e.value.code == "REF_CONFLICT" and e.value.status == 409
    assert client.get_ref(name).commit_id == c2.id

    assert name in [r.name for r in client.list_refs()]
    moves = [(m.from_commit_id, m.to_commit_id) for m in client.get_ref_log(name)]
    assert moves == [(None, c1.id), (c1.id, c2.id)]

    # Rollback is just pointing at an older commit.
    assert client.update_ref(name, c1.id).commit_id == c1.id

    assert client.delete_ref(name) is None
    assert client.get_ref(name) is None
    with pytest.raises(RosetNotFoundError) as e:
        client.delete_ref(name)
    assert e.value.code == "REF_NOT_FOUND"


def test_update_ref_refuses_a_commit_that_is_not_completed(client, daemon, workdir, unique):
    local, rel = workdir
    os.makedirs(f"{local}/open")
    f = open(f"{local}/open/model.pt", "wb")
    try:
        commit = client.commit(client.resolve_path(f"{rel}/open").id)
        with pytest.raises(RosetConflictError) as e:
            client.update_ref(f"r-{unique}", commit.id)
        assert e.value.code == "COMMIT_NOT_COMPLETED"
    finally:
        f.close()
    client.wait_for_commit(commit.id, timeout=30)
    assert client.get_ref(f"r-{unique}") is None


# --------------------------------------------------------------- groups


def test_commit_group_completes_all_commits_together(client, daemon, workdir):
    local, rel = workdir
    write(f"{local}/model/weights.pt", b"w" * 100)
    write(f"{local}/optim/state.pt", b"s" * 100)
    f1 = client.resolve_path(f"{rel}/model")
    f2 = client.resolve_path(f"{rel}/optim")

    group = client.create_commit_group(message="step 1000, model and optimizer")
    assert isinstance(group, roset.CommitGroup) and group.status == "pending" and group.message.startswith("step 1000")

    c1 = client.commit(f1.id, group_id=group.id)
    c2 = client.commit(f2.id, group_id=group.id)
    assert c1.group_id == group.id and c2.group_id == group.id
    # Nothing becomes visible before the group is sealed.
    time.sleep(0.5)
    assert client.get_commit(c1.id).status == "pending" and client.get_commit(c2.id).status == "pending"

    sealed = client.seal_commit_group(group.id)
    assert sealed.id == group.id and sealed.status in ("pending", "committed")
    done = client.wait_for_commit_group(group.id, timeout=30)
    assert done.status == "committed" and set(done.commit_ids) == {c1.id, c2.id}
    assert done.committed_at is not None and done.sealed_at is not None
    assert client.get_commit(c1.id).is_completed and client.get_commit(c2.id).is_completed


# --------------------------------------------------------- auth and env


def test_wrong_or_missing_key_is_401(daemon, monkeypatch, tmp_path):
    bad = roset.Client(api_url=daemon.endpoint, api_key="rsk_wrong")
    with pytest.raises(RosetAuthenticationError) as e:
        bad.get_ref("latest")
    assert e.value.status == 401 and e.value.code == "UNAUTHORIZED" and isinstance(e.value, RosetAPIError)
    assert bad.health()["status"] == "ok"  # /health needs no key

    for var in ("ROSET_API_KEY", "ROSET_API_URL", "ROSET_MOUNT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ROSET_STATE_DIR", str(tmp_path))  # no api-key file there
    none = roset.Client(api_url=daemon.endpoint)
    assert none.api_key is None
    with pytest.raises(RosetAuthenticationError):
        none.list_mounts()


def test_environment_variables(daemon, monkeypatch, tmp_path):
    monkeypatch.setenv("ROSET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("ROSET_API_URL", daemon.endpoint)
    monkeypatch.setenv("ROSET_API_KEY", daemon.api_key)
    monkeypatch.setenv("ROSET_MOUNT_ID", daemon.mount_id)
    c = roset.Client()
    assert (c.api_url, c.api_key, c.mount_id) == (daemon.endpoint, daemon.api_key, daemon.mount_id)
    assert c.resolve_path("/") is not None  # the X-Roset-Mount-Id header names a real mount

    # Arguments beat the environment.
    c2 = roset.Client(api_url="http://127.0.0.1:1", api_key="rsk_arg", mount_id="mnt_arg", timeout=5, max_retries=0)
    assert (c2.api_url, c2.api_key, c2.mount_id, c2.timeout, c2.max_retries) == (
        "http://127.0.0.1:1", "rsk_arg", "mnt_arg", 5.0, 0)

    monkeypatch.setenv("ROSET_MOUNT_ID", "mnt_doesnotexist")
    with pytest.raises(RosetNotFoundError) as e:
        roset.Client().resolve_path("/")
    assert e.value.code == "MOUNT_NOT_FOUND"


def test_state_dir_files_then_default(daemon, monkeypatch, tmp_path):
    for var in ("ROSET_API_URL", "ROSET_API_KEY", "ROSET_MOUNT_ID"):
        monkeypatch.delenv(var, raising=False)
    # The daemon's own state dir: endpoint and api-key files.
    monkeypatch.setenv("ROSET_STATE_DIR", daemon.state_dir)
    c = roset.Client()
    assert (c.api_url, c.api_key) == (daemon.endpoint, daemon.api_key)
    assert c.list_mounts()[0].id == daemon.mount_id

    # An empty state dir: the embedded default URL, no key.
    monkeypatch.setenv("ROSET_STATE_DIR", str(tmp_path))
    d = roset.Client()
    assert (d.api_url, d.api_key, d.mount_id) == ("http://127.0.0.1:7070", None, None)
