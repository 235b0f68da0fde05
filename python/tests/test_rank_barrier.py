"""The integrations' rank barrier, without a process group (unit).

``wait_for_all_ranks`` (roset/integrations/_common.py) does nothing unless
``torch.distributed`` is imported, available and initialised. When it is, the
Hugging Face callback and the Ray callback call it once per save on every rank,
and world zero commits only after it; Lightning's ``RosetCheckpointIO`` never
calls it (Lightning calls the plugin on rank zero only, so a barrier there would
deadlock). ``torch.distributed`` is replaced by a recording fake in
``sys.modules`` and the API by a fake client: no daemon, no process group.
"""
import os
import sys
from types import SimpleNamespace

import pytest

from conftest import need_module

from roset.integrations._common import wait_for_all_ranks


class FakeDist:
    """The three functions of ``torch.distributed`` that the barrier uses."""

    def __init__(self, events, available=True, initialized=True):
        self.events = events
        self.available = available
        self.initialized = initialized

    def is_available(self):
        return self.available

    def is_initialized(self):
        return self.initialized

    def barrier(self):
        self.events.append("barrier")


class FakeClient:
    """Records commits and ref moves in the same event list as the barrier."""

    def __init__(self, events):
        self.events = events
        self.mount_id = None

    def resolve_path(self, path):
        return SimpleNamespace(id=f"node:{path}", path=path, is_committed=False, commit_id=None)

    def commit(self, node_id, message=None, group_id=None):
        self.events.append(f"commit {node_id[len('node:'):]}")
        return SimpleNamespace(id=f"commit:{node_id[len('node:'):]}", path=node_id[len("node:"):])

    def wait_for_commit(self, commit_id, timeout=60):
        return SimpleNamespace(id=commit_id, path=commit_id[len("commit:"):])

    def update_ref(self, name, commit_id, expected_commit_id=None):
        self.events.append(f"ref {name} {commit_id[len('commit:'):]}")


@pytest.fixture(autouse=True)
def frameworks():
    """Import the frameworks (and the real torch.distributed) before any test puts
    its fake in their place: torch cannot be imported while the fake is there."""
    need_module("torch")
    need_module("torch.distributed")
    need_module("transformers")
    need_module("lightning")
    need_module("roset.integrations.huggingface")
    need_module("roset.integrations.pytorch")
    need_module("roset.integrations.ray")


@pytest.fixture
def events():
    return []


@pytest.fixture
def distributed(frameworks, monkeypatch, events):
    """Install a fake, initialised ``torch.distributed``; returns it."""
    fake = FakeDist(events)
    monkeypatch.setitem(sys.modules, "torch.distributed", fake)
    return fake


# ------------------------------------------------------------- the helper


def test_no_torch_distributed_module_is_a_no_op(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch.distributed", raising=False)
    assert wait_for_all_ranks() is False
    # It never imports torch to find out.
    assert "torch.distributed" not in sys.modules


@pytest.mark.parametrize("available,initialized", [(False, False), (True, False)])
def test_an_uninitialised_process_group_is_a_no_op(monkeypatch, events, available, initialized):
    monkeypatch.setitem(sys.modules, "torch.distributed", FakeDist(events, available, initialized))
    assert wait_for_all_ranks() is False
    assert events == []


def test_an_initialised_process_group_waits_once(distributed, events):
    assert wait_for_all_ranks() is True
    assert events == ["barrier"]


# ------------------------------------------------------------- Hugging Face


def hf_saves(tmp_path, events, rank, async_commit=False):
    """Two on_save calls (steps 2 and 4) of one RosetTrainerCallback on ``rank``."""
    from roset.integrations.huggingface import RosetTrainerCallback

    out = tmp_path / "out"
    callback = RosetTrainerCallback(FakeClient(events), update_ref="latest", async_commit=async_commit,
                                    mount_path=str(tmp_path))
    for step in (2, 4):
        os.makedirs(out / f"checkpoint-{step}")
        state = SimpleNamespace(is_world_process_zero=rank == 0, global_step=step)
        callback.on_save(SimpleNamespace(output_dir=str(out)), state, None)
    callback.on_train_end(SimpleNamespace(output_dir=str(out)), state, None)
    return callback


@pytest.mark.parametrize("async_commit", [False, True])
def test_hf_every_rank_waits_once_per_save_and_world_zero_commits_after(distributed, events, tmp_path, async_commit):
    hf_saves(tmp_path / "rank1", events, rank=1, async_commit=async_commit)
    assert events == ["barrier", "barrier"]  # and no commit
    events.clear()

    callback = hf_saves(tmp_path / "rank0", events, rank=0, async_commit=async_commit)
    assert [c.path for c in callback.commits] == ["/out/checkpoint-2", "/out/checkpoint-4"]
    if async_commit:
        # Commits run on the background thread: each one after its own save's barrier.
        barriers = [i for i, e in enumerate(events) if e == "barrier"]
        assert len(barriers) == 2
        assert events.index("commit /out/checkpoint-2") > barriers[0]
        assert events.index("commit /out/checkpoint-4") > barriers[1]
    else:
        assert events == [
            "barrier", "commit /out/checkpoint-2", "ref latest /out/checkpoint-2",
            "barrier", "commit /out/checkpoint-4", "ref latest /out/checkpoint-4",
        ]


def test_hf_without_a_process_group_commits_without_waiting(monkeypatch, events, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.distributed", FakeDist(events, initialized=False))
    hf_saves(tmp_path, events, rank=0)
    assert events == [
        "commit /out/checkpoint-2", "ref latest /out/checkpoint-2",
        "commit /out/checkpoint-4", "ref latest /out/checkpoint-4",
    ]


# ------------------------------------------------------------- Ray


def ray_saves(monkeypatch, tmp_path, events, rank):
    from roset.integrations import ray as roset_ray

    monkeypatch.setattr(roset_ray, "_world_rank", lambda: rank)
    callback = roset_ray.RosetRayTrainCallback(FakeClient(events), update_ref="latest", mount_path=str(tmp_path))
    results = []
    for step in (1, 2):
        os.makedirs(tmp_path / f"step-{step}")
        results.append(callback.process_checkpoint(str(tmp_path / f"step-{step}"), step=step))
    return results


def test_ray_every_worker_waits_once_per_checkpoint_and_rank_zero_commits_after(monkeypatch, distributed, events, tmp_path):
    assert ray_saves(monkeypatch, tmp_path / "w1", events, rank=1) == [None, None]
    assert events == ["barrier", "barrier"]
    events.clear()

    commits = ray_saves(monkeypatch, tmp_path / "w0", events, rank=0)
    assert [c.path for c in commits] == ["/step-1", "/step-2"]
    assert events == [
        "barrier", "commit /step-1", "ref latest /step-1",
        "barrier", "commit /step-2", "ref latest /step-2",
    ]


def test_ray_without_a_process_group_commits_without_waiting(monkeypatch, events, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.distributed", FakeDist(events, initialized=False))
    ray_saves(monkeypatch, tmp_path, events, rank=0)
    assert events == ["commit /step-1", "ref latest /step-1", "commit /step-2", "ref latest /step-2"]


# ------------------------------------------------------------- Lightning


@pytest.mark.parametrize("rank", [0, 1])
def test_lightning_never_waits_in_save_checkpoint(monkeypatch, distributed, events, tmp_path, rank):
    """Lightning calls CheckpointIO.save_checkpoint on global rank zero only: a barrier
    there would wait for ranks that never come. Rank zero commits at once; a call on
    another rank (a strategy that calls every rank) writes and waits for nothing."""
    import torch
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from roset.integrations.pytorch import RosetCheckpointIO

    monkeypatch.setattr(rank_zero_only, "rank", rank)
    io = RosetCheckpointIO(client=FakeClient(events), mount_path=str(tmp_path), checkpoint_dir="/ck", update_ref="latest")
    for step in (2, 4):
        io.save_checkpoint({"global_step": step, "w": torch.ones(2)}, f"/anywhere/step{step}.ckpt")
    if rank == 0:
        assert events == ["commit /ck/step2", "ref latest /ck/step2", "commit /ck/step4", "ref latest /ck/step4"]
    else:
        assert events == [] and not os.path.exists(tmp_path / "ck")
