"""The README's snippets, run as written (acceptance 7 of issue 4).

Each snippet of python/README.md (quick start, Lightning, Hugging Face, Ray) runs
in a fresh process (tests/scripts/readme_snippet.py) against its own fresh
daemon, because the snippets all use the literal ref name ``latest`` and the
literal paths ``/checkpoints/...``; then the outcome is checked through the API.
"""
import errno
import os

import pytest

from conftest import need_module, read_json, run_script, start_daemon

pytestmark = [pytest.mark.daemon, pytest.mark.slow]


@pytest.fixture
def fresh(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("roset-py-readme"), seal_timeout=2)
    try:
        yield d
    finally:
        d.stop()


def run(name, d, tmp_path, phase=1, timeout=300):
    out = tmp_path / f"{name}-{phase}.json"
    env = d.env()
    env.update(RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run_script("readme_snippet.py", [name, "--mount", d.mountpoint, "--out", out, "--phase", phase,
                                       "--root", tmp_path / "root"], env, timeout=timeout)
    return read_json(out)


def test_quickstart(fresh, tmp_path):
    result = run("quickstart", fresh, tmp_path)
    client = fresh.client()
    latest = client.get_ref("latest")
    assert latest.commit_id == result["commit"]
    assert latest.commit.path == "/checkpoints/step-1000" and latest.commit.is_completed
    assert latest.commit.message == "Training step 1000" and latest.commit.stats.files == 1
    with pytest.raises(OSError) as e:
        open(f"{fresh.mountpoint}/checkpoints/step-1000/model.pt", "ab").close()
    assert e.value.errno == errno.EROFS


def test_lightning_snippet_first_run_then_resume(fresh, tmp_path):
    need_module("pytorch_lightning")
    client = fresh.client()
    first = run("lightning", fresh, tmp_path, phase=1)
    assert (first["start_step"], first["end_step"]) == (0, 2)  # no ref yet: a fresh start
    assert client.get_ref("latest").commit.path == "/checkpoints/epoch=0-step=2"

    second = run("lightning", fresh, tmp_path, phase=2)  # a new process, same snippet
    assert (second["start_step"], second["end_step"]) == (2, 4)
    latest = client.get_ref("latest")
    assert latest.commit.path == "/checkpoints/epoch=1-step=4" and latest.commit.is_completed
    # ModelCheckpoint(save_top_k=1) removed the older one: soft-deleted through the API.
    assert client.resolve_path("/checkpoints/epoch=0-step=2") is None


def test_huggingface_snippet(fresh, tmp_path):
    need_module("transformers")
    result = run("huggingface", fresh, tmp_path)
    assert result["end_step"] == 4
    client = fresh.client()
    assert client.get_ref("latest").commit.path == "/checkpoints/checkpoint-4"
    for n in (2, 4):
        assert client.resolve_path(f"/checkpoints/checkpoint-{n}").state == "committed"


def test_ray_snippet(fresh, tmp_path):
    need_module("ray.train.torch")
    run("ray", fresh, tmp_path, timeout=400)
    client = fresh.client()
    latest = client.get_ref("latest")
    assert latest.commit.path == "/checkpoints/step-1000" and latest.commit.is_completed
    assert [f.path for f in client.get_manifest(latest.commit_id).files] == ["model.pt"]
    assert os.path.isfile(f"{fresh.mountpoint}/checkpoints/step-1000/model.pt")
