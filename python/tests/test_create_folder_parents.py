"""The seed quick start's ``client.create_folder("/checkpoints", "step-1000")`` works
on a fresh mount: missing parent folders are created as ``mkdir -p`` would, and
creating the same folder again is a ``NODE_EXISTS`` conflict.
"""
import os

import pytest

pytestmark = pytest.mark.daemon


def test_create_folder_makes_missing_parents_on_a_fresh_mount(fresh_daemon):
    from roset.exceptions import RosetConflictError

    client = fresh_daemon.client()
    assert client.resolve_path("/checkpoints") is None

    folder = client.create_folder("/checkpoints", "step-1000")
    assert (folder.path, folder.name, folder.type, folder.state) == ("/checkpoints/step-1000", "step-1000", "folder", "staging")
    parent = client.resolve_path("/checkpoints")
    assert parent is not None and parent.type == "folder" and parent.state == "staging"
    assert folder.parent_id == parent.id
    assert os.path.isdir(os.path.join(fresh_daemon.mountpoint, "checkpoints", "step-1000"))

    with pytest.raises(RosetConflictError) as e:
        client.create_folder("/checkpoints", "step-1000")
    assert e.value.code == "NODE_EXISTS"

    # The quick start goes on: a file written through the mount, then the commit.
    with open(os.path.join(fresh_daemon.mountpoint, "checkpoints", "step-1000", "model.pt"), "wb") as f:
        f.write(b"...weights...")
    commit = client.wait_for_commit(client.commit(folder.id, message="Training step 1000").id, timeout=30)
    assert commit.stats.files == 1
