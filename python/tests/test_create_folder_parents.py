"""The seed quick start's ``client.create_folder("/checkpoints", "step-1000")`` works
on a fresh mount: missing parent folders are created as ``mkdir -p`` would, and
creating the same folder again is a ``NODE_EXISTS`` conflict.
"""
import os

import pytest

from conftest import need_module, start_daemon

pytestmark = pytest.mark.daemon


@pytest.fixture
def fresh(tmp_path_factory):
    need_module("roset")
    d = start_daemon(tmp_path_factory.mktemp("roset-py-parents"), seal_timeout=2)
    try:
        yield d
    finally:
        d.stop()


def test_create_folder_makes_missing_parents_on_a_fresh_mount(fresh):
    from roset.exceptions import RosetConflictError

    client = fresh.client()
    assert client.resolve_path("/checkpoints") is None

    folder = client.create_folder("/checkpoints", "step-1000")
    assert (folder.path, folder.name, folder.type, folder.state) == ("/checkpoints/step-1000", "step-1000", "folder", "staging")
    parent = client.resolve_path("/checkpoints")
    assert parent is not None and parent.type == "folder" and parent.state == "staging"
    assert folder.parent_id == parent.id
    assert os.path.isdir(os.path.join(fresh.mountpoint, "checkpoints", "step-1000"))

    with pytest.raises(RosetConflictError) as e:
        client.create_folder("/checkpoints", "step-1000")
    assert e.value.code == "NODE_EXISTS"

    # The quick start goes on: a file written through the mount, then the commit.
    with open(os.path.join(fresh.mountpoint, "checkpoints", "step-1000", "model.pt"), "wb") as f:
        f.write(b"...weights...")
    commit = client.wait_for_commit(client.commit(folder.id, message="Training step 1000").id, timeout=30)
    assert commit.stats.files == 1
