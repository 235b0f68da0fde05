"""Client behaviour against a scripted local HTTP server (no daemon needed).

What only a fake server can make happen on demand: 5xx and 429 answers,
Retry-After, dropped connections, refused connections and non-JSON bodies. Also
the configuration order and the wire-to-model translation.
"""
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Tuple

import pytest

import roset
from roset._config import resolve_config
from roset.exceptions import (
    RosetAPIError,
    RosetAuthenticationError,
    RosetConflictError,
    RosetConnectionError,
    RosetNotFoundError,
)


class FakeAPI:
    """A server that answers from a script: a list of (status, headers, body) per request."""

    def __init__(self):
        self.script: List[Tuple[int, dict, object]] = []
        self.requests: List[dict] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                api.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, headers, payload = api.script.pop(0) if api.script else (200, {}, {})
                if status == "drop":
                    # Close without answering: a reset / lost response.
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    a = FakeAPI()
    yield a
    a.close()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_client(api, sleeps):
    def make(**kw):
        kw.setdefault("api_url", api.url)
        kw.setdefault("api_key", "rsk_test")
        c = roset.Client(**kw)
        c._sleep = sleeps.append  # record the backoff instead of sleeping
        return c

    return make


def err(code, message="boom", details=None):
    return {"error": {"code": code, "message": message, "details": details or {}}}


NODE = {
    "id": "node_1", "mountId": "mnt_1", "parentId": "node_0", "path": "/checkpoints/step-1", "name": "step-1",
    "type": "folder", "size": 0, "state": "committed", "commitId": "cmt_1",
    "createdAt": "2026-11-26T08:34:25.203Z", "updatedAt": "2026-11-26T08:34:25.203Z", "deletedAt": None,
    "someFutureField": 1,
}
COMMIT = {
    "id": "cmt_1", "mountId": "mnt_1", "nodeId": "node_1", "path": "/checkpoints/step-1", "message": "m",
    "groupId": None, "status": "completed", "error": None,
    "stats": {"files": 2, "bytes": 10, "uploadedBytes": 6, "dedupedBytes": 4},
    "createdAt": "2026-11-26T08:35:36.921Z", "completedAt": "2026-11-26T08:35:36.940Z", "purgedAt": None,
}


# ---------------------------------------------------------------- retries


def test_retries_5xx_then_succeeds(api, make_client, sleeps):
    api.script = [(503, {}, err("INTERNAL")), (500, {}, b"oops"), (200, {}, NODE)]
    node = make_client().get_node("node_1")
    assert node.id == "node_1"
    assert len(api.requests) == 3 and len(sleeps) == 2
    # Jittered exponential backoff: retry n waits within [d/2, d], d = 0.25 * 2**n.
    assert 0.125 <= sleeps[0] <= 0.25 and 0.25 <= sleeps[1] <= 0.5


def test_backoff_is_jittered(api, make_client, sleeps):
    api.script = [(503, {}, err("INTERNAL"))] * 4 + [(200, {}, NODE)] + [(503, {}, err("INTERNAL"))] * 4 + [(200, {}, NODE)]
    c = make_client(max_retries=4)
    c.get_node("node_1")
    c.get_node("node_1")
    assert len(sleeps) == 8 and sleeps[:4] != sleeps[4:]


def test_429_honours_retry_after_seconds_and_date(api, make_client, sleeps):
    api.script = [
        (429, {"Retry-After": "2"}, err("RATE_LIMITED")),
        (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, err("INTERNAL")),  # in the past: no wait
        (200, {}, NODE),
    ]
    make_client().get_node("node_1")
    assert sleeps == [2.0, 0.0]


def test_retry_after_is_capped(api, make_client, sleeps):
    api.script = [(429, {"Retry-After": "86400"}, err("RATE_LIMITED")), (200, {}, NODE)]
    make_client().get_node("node_1")
    assert sleeps == [roset.Client.max_retry_after]


def test_gives_up_after_max_retries(api, make_client, sleeps):
    api.script = [(503, {}, err("STORAGE_ERROR", "store down"))] * 10
    with pytest.raises(RosetAPIError) as e:
        make_client(max_retries=2).get_commit("cmt_1")
    assert (e.value.code, e.value.status, e.value.message) == ("STORAGE_ERROR", 503, "store down")
    assert len(api.requests) == 3 and len(sleeps) == 2


def test_max_retries_zero_means_one_attempt(api, make_client, sleeps):
    api.script = [(503, {}, err("INTERNAL"))]
    with pytest.raises(RosetAPIError):
        make_client(max_retries=0).get_node("node_1")
    assert len(api.requests) == 1 and sleeps == []


def test_4xx_is_not_retried(api, make_client, sleeps):
    api.script = [(400, {}, err("BAD_REQUEST"))]
    with pytest.raises(RosetAPIError) as e:
        make_client().get_node("node_1")
    assert e.value.code == "BAD_REQUEST" and len(api.requests) == 1 and sleeps == []


def test_commit_post_is_not_repeated_after_a_500(api, make_client, sleeps):
    """A 500 on POST may have been acted on: repeating would commit twice."""
    api.script = [(500, {}, err("INTERNAL"))]
    with pytest.raises(RosetAPIError) as e:
        make_client().commit("node_1", message="m")
    assert e.value.status == 500 and len(api.requests) == 1


def test_commit_post_is_repeated_after_503_and_429(api, make_client, sleeps):
    api.script = [(503, {}, err("INTERNAL")), (429, {"Retry-After": "0"}, err("X")), (202, {}, dict(COMMIT, status="pending"))]
    c = make_client().commit("node_1", message="m", group_id="grp_1")
    assert c.status == "pending" and len(api.requests) == 3
    assert json.loads(api.requests[0]["body"]) == {"message": "m", "groupId": "grp_1"}


def test_dropped_connection_is_retried_for_reads(api, make_client, sleeps):
    api.script = [("drop", {}, b""), (200, {}, NODE)]
    assert make_client().get_node("node_1").id == "node_1"
    assert len(api.requests) == 2 and len(sleeps) == 1


def test_dropped_connection_is_not_retried_for_commit(api, make_client, sleeps):
    api.script = [("drop", {}, b""), (202, {}, COMMIT)]
    with pytest.raises(RosetConnectionError):
        make_client().commit("node_1")
    assert len(api.requests) == 1


def test_refused_connection_is_retried_then_raises(sleeps):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = roset.Client(api_url=f"http://127.0.0.1:{port}", api_key="rsk_x", max_retries=2)
    c._sleep = sleeps.append
    with pytest.raises(RosetConnectionError) as e:
        c.commit("node_1")  # never sent, so even a commit may be retried
    assert len(sleeps) == 2 and e.value.code == "NETWORK_ERROR"
    assert isinstance(e.value, roset.RosetError)


# ------------------------------------------------------------ error mapping


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (404, "NODE_NOT_FOUND", RosetNotFoundError),
        (409, "REF_CONFLICT", RosetConflictError),
        (401, "UNAUTHORIZED", RosetAuthenticationError),
        (403, "FORBIDDEN", RosetAuthenticationError),
        (400, "INVALID_PATH", RosetAPIError),
    ],
)
def test_error_mapping(api, make_client, status, code, cls):
    api.script = [(status, {}, err(code, "the message", {"path": "/x"}))]
    with pytest.raises(cls) as e:
        make_client().get_node("node_1")
    assert type(e.value) is cls
    assert (e.value.code, e.value.message, e.value.status, e.value.details) == (code, "the message", status, {"path": "/x"})


def test_non_json_error_body(api, make_client):
    api.script = [(404, {}, b"<html>nope</html>")]
    with pytest.raises(RosetNotFoundError) as e:
        make_client().get_node("node_1")
    assert e.value.code == "HTTP_404" and "nope" in e.value.message


def test_get_ref_and_resolve_path_return_none_when_missing(api, make_client):
    api.script = [(404, {}, err("REF_NOT_FOUND")), (200, {}, {"nodes": {"/a/b": None}})]
    c = make_client()
    assert c.get_ref("latest") is None
    assert c.resolve_path("a/b/") is None
    assert json.loads(api.requests[1]["body"]) == {"paths": ["/a/b"]}


def test_get_ref_does_not_hide_other_404s(api, make_client):
    api.script = [(404, {}, err("MOUNT_NOT_FOUND"))]
    with pytest.raises(RosetNotFoundError):
        make_client().get_ref("latest")


def test_wait_for_commit_failed_raises_with_commit_code(api, make_client):
    failed = dict(COMMIT, status="failed", error={"code": "STORAGE_ERROR", "message": "503 from S3"})
    api.script = [(200, {}, dict(COMMIT, status="pending")), (200, {}, failed)]
    with pytest.raises(roset.RosetCommitFailedError) as e:
        make_client().wait_for_commit("cmt_1", timeout=10, poll_interval=0.01)
    assert isinstance(e.value, RosetAPIError) and e.value.code == "STORAGE_ERROR" and "503 from S3" in e.value.message


def test_wait_for_commit_times_out(api, make_client):
    api.script = [(200, {}, dict(COMMIT, status="pending"))] * 1000
    with pytest.raises(roset.RosetTimeoutError) as e:
        make_client().wait_for_commit("cmt_1", timeout=0.2, poll_interval=0.01)
    assert e.value.commit_id == "cmt_1"


def _progress(done, phase="uploading"):
    return {"phase": phase, "filesTotal": 4, "filesDone": done, "bytesTotal": 4096, "bytesUploaded": 1024 * done}


def test_wait_for_commit_calls_on_progress_each_poll(api, make_client):
    done = dict(COMMIT, status="completed", progress=None, stats={"files": 4, "bytes": 4096, "uploadedBytes": 4096, "dedupedBytes": 0})
    api.script = [(200, {}, dict(COMMIT, status="pending", progress=_progress(k))) for k in range(4)] + [(200, {}, done)]
    seen = []
    c = make_client().wait_for_commit("cmt_1", timeout=10, poll_interval=0.01, on_progress=seen.append)
    assert c.is_completed and c.progress is None
    assert [x.progress.files_done for x in seen[:-1]] == [0, 1, 2, 3]
    assert seen[1].progress == roset.CommitProgress(phase="uploading", files_total=4, files_done=1, bytes_total=4096, bytes_uploaded=1024)
    assert seen[-1] is not None and seen[-1].is_completed


def test_wait_for_commit_progress_bar_with_tqdm(api, make_client, monkeypatch):
    tqdm = pytest.importorskip("tqdm")
    import tqdm.auto

    bars = []

    class Recording(tqdm.tqdm):
        def __init__(self, *a, **kw):
            kw["disable"] = False
            kw["file"] = open(os.devnull, "w")
            self.seen = []
            super().__init__(*a, **kw)
            bars.append(self)

        def refresh(self, *a, **kw):
            self.seen.append((self.n, self.total))
            return super().refresh(*a, **kw)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    done = dict(COMMIT, status="completed", progress=None, stats={"files": 4, "bytes": 4096, "uploadedBytes": 4096, "dedupedBytes": 0})
    api.script = [(200, {}, dict(COMMIT, status="pending", progress=_progress(k))) for k in (1, 3)] + [(200, {}, done)]
    make_client().wait_for_commit("cmt_1", timeout=10, poll_interval=0.01, progress=True)
    assert len(bars) == 1
    assert (1024, 4096) in bars[0].seen and (3072, 4096) in bars[0].seen
    assert bars[0].seen[-1] == (4096, 4096)
    bars[0].fp.close()


def test_wait_for_commit_progress_without_tqdm_just_waits(api, make_client, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *a, **kw):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    api.script = [(200, {}, dict(COMMIT, status="pending", progress=_progress(2))), (200, {}, dict(COMMIT, status="completed", progress=None))]
    assert make_client().wait_for_commit("cmt_1", timeout=10, poll_interval=0.01, progress=True).is_completed


# ------------------------------------------------------- request and models


def test_headers_paths_and_bodies(api, make_client):
    api.script = [
        (201, {}, NODE), (200, {}, {"name": "latest", "mountId": "mnt_1", "commitId": "cmt_1", "commit": COMMIT,
                                    "updatedAt": "2026-11-26T08:35:37Z", "updatedBy": "key_1"}),
        (204, {}, b""),
    ]
    c = make_client(mount_id="mnt_9")
    c.create_folder("/checkpoints", "step-1")
    ref = c.update_ref("latest", "cmt_1", expected_commit_id="cmt_0")
    assert c.delete_ref("latest") is None
    r0, r1, r2 = api.requests
    assert r0["method"] == "POST" and r0["path"] == "/v1/nodes"
    assert json.loads(r0["body"]) == {"parentPath": "/checkpoints", "name": "step-1", "type": "folder"}
    assert r0["headers"]["Authorization"] == "Bearer rsk_test" and r0["headers"]["X-Roset-Mount-Id"] == "mnt_9"
    assert r0["headers"]["Content-Type"] == "application/json"
    assert (r1["method"], r1["path"]) == ("PUT", "/v1/refs/latest")
    assert json.loads(r1["body"]) == {"commitId": "cmt_1", "expectedCommitId": "cmt_0"}
    assert (r2["method"], r2["path"]) == ("DELETE", "/v1/refs/latest")
    assert ref.commit.stats.deduped_bytes == 4 and ref.updated_by == "key_1"


def test_pagination_follows_next_cursor(api, make_client):
    api.script = [
        (200, {}, {"items": [COMMIT], "nextCursor": "c2"}),
        (200, {}, {"items": [dict(COMMIT, id="cmt_2")], "nextCursor": None}),
    ]
    commits = make_client().list_commits(node_id="node_1", status="completed")
    assert [c.id for c in commits] == ["cmt_1", "cmt_2"]
    assert api.requests[0]["path"] == "/v1/commits?nodeId=node_1&status=completed"
    assert api.requests[1]["path"] == "/v1/commits?nodeId=node_1&status=completed&cursor=c2"


def test_models_from_camel_case():
    n = roset.Node.from_dict(NODE)
    assert (n.mount_id, n.parent_id, n.commit_id, n.is_committed, n.is_folder) == ("mnt_1", "node_0", "cmt_1", True, True)
    assert n.created_at.year == 2026 and n.created_at.tzinfo is not None and n.deleted_at is None
    assert n.raw["someFutureField"] == 1
    c = roset.Commit.from_dict(dict(COMMIT, status="failed", error={"code": "OPEN_HANDLES", "message": "m"}))
    assert c.is_failed and c.error.code == "OPEN_HANDLES" and c.stats.uploaded_bytes == 6
    assert c.purged_at is None and not c.is_purged
    # A commit garbage collection purged says when.
    p = roset.Commit.from_dict(dict(COMMIT, purgedAt="2026-11-27T01:02:03Z"))
    assert p.is_purged and p.purged_at.day == 27 and p.purged_at.tzinfo is not None
    g = roset.CommitGroup.from_dict({"id": "grp_1", "message": None, "status": "committed", "commitIds": ["a", "b"],
                                     "createdAt": "2026-11-26T08:35:36Z", "committedAt": None, "sealedAt": None})
    assert g.commit_ids == ["a", "b"] and g.committed_at is None


# ----------------------------------------------------------- configuration


def test_config_order(tmp_path):
    (tmp_path / "endpoint").write_text("http://127.0.0.1:4242\n")
    (tmp_path / "api-key").write_text("rsk_file\n")
    env = {"ROSET_STATE_DIR": str(tmp_path)}
    cfg = resolve_config(env=env)
    assert (cfg.api_url, cfg.api_key, cfg.mount_id) == ("http://127.0.0.1:4242", "rsk_file", None)

    env.update(ROSET_API_URL="http://localhost:9/", ROSET_API_KEY="rsk_env", ROSET_MOUNT_ID="mnt_env")
    cfg = resolve_config(env=env)
    assert (cfg.api_url, cfg.api_key, cfg.mount_id) == ("http://localhost:9", "rsk_env", "mnt_env")

    cfg = resolve_config("http://127.0.0.1:1", "rsk_arg", "mnt_arg", env=env)
    assert (cfg.api_url, cfg.api_key, cfg.mount_id) == ("http://127.0.0.1:1", "rsk_arg", "mnt_arg")

    # Blank values count as unset, as in the TypeScript SDK.
    env.update(ROSET_API_URL=" ", ROSET_API_KEY="")
    assert resolve_config(env=env).api_key == "rsk_file"

    empty = resolve_config(env={"ROSET_STATE_DIR": str(tmp_path / "none")})
    assert (empty.api_url, empty.api_key) == ("http://127.0.0.1:7070", None)


def test_local_key_file_never_goes_to_a_remote_api(tmp_path):
    (tmp_path / "api-key").write_text("rsk_local")
    env = {"ROSET_STATE_DIR": str(tmp_path)}
    assert resolve_config("https://api.example.invalid", env=env).api_key is None
    assert resolve_config("http://127.0.0.1:9999", env=env).api_key == "rsk_local"
    assert resolve_config("localhost:9999", env=env).api_url == "http://localhost:9999"


def test_default_state_dir_for_root_and_users(monkeypatch):
    from roset import _config

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert _config.default_state_dir({}) == "/var/lib/roset"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _config.default_state_dir({}).endswith("/.local/state/roset")
    assert _config.default_state_dir({"ROSET_STATE_DIR": "/x/y"}) == "/x/y"


def test_repr_hides_the_key():
    c = roset.Client(api_url="http://127.0.0.1:1", api_key="rsk_secret")
    assert "rsk_secret" not in repr(c)


def test_readme_surface_names():
    """Every name of the original SDK README's API reference, with its parameters."""
    import inspect

    params = lambda f: list(inspect.signature(f).parameters)  # noqa: E731
    C = roset.Client
    # The README's parameters, in order; then only the optional ca_file (TLS with a private CA).
    assert params(C.__init__) == ["self", "api_url", "api_key", "mount_id", "timeout", "max_retries", "ca_file"]
    assert inspect.signature(C.__init__).parameters["ca_file"].default is None
    assert inspect.signature(C.__init__).parameters["timeout"].default == 30.0
    assert inspect.signature(C.__init__).parameters["max_retries"].default == 3
    assert params(C.get_node) == ["self", "node_id"]
    assert params(C.resolve_path) == ["self", "path"]
    assert params(C.create_folder) == ["self", "parent", "name"]
    assert params(C.delete_node) == ["self", "node_id"]
    assert params(C.commit) == ["self", "node_id", "message", "group_id"]
    assert params(C.wait_for_commit)[:3] == ["self", "commit_id", "timeout"]
    assert inspect.signature(C.wait_for_commit).parameters["timeout"].default == 60
    assert params(C.get_commit) == ["self", "commit_id"]
    assert params(C.get_ref) == ["self", "name"]
    assert params(C.update_ref) == ["self", "name", "commit_id", "expected_commit_id"]
    assert params(C.delete_ref) == ["self", "name"]
    assert params(C.create_commit_group) == ["self", "message"]
    assert params(C.seal_commit_group) == ["self", "group_id"]
    from roset.exceptions import RosetAPIError as A, RosetError as E, RosetNotFoundError as N, RosetConflictError as X

    assert issubclass(A, E) and issubclass(N, A) and issubclass(X, A)
    assert (A("C", "m", 500).code, A("C", "m", 500).message, A("C", "m", 500).status) == ("C", "m", 500)
