"""Test fixtures: a real `roset-mount` daemon per test session, a real cluster of
several nodes per test that asks for one, and strict CI rules.

Owns:
- building the TypeScript daemon when it is not built yet (``npm ci`` when
  ``node_modules`` is missing, then ``npm run build``);
- starting ``node bin/roset-mount.js MNT --state-dir S --cache-dir C --listen
  127.0.0.1:0 --seal-timeout 2`` in fresh temporary directories, waiting for its
  ``endpoint`` and ``api-key`` files, and handing tests a :class:`Daemon`;
- the ``cluster`` fixture: ``node bin/roset.js serve`` (the control plane alone,
  SQLite metadata, a local directory store) and three ``roset-mount --api-url``
  agents of it, each with its own mountpoint, state and cache directory, standing
  for three nodes (:class:`Cluster`);
- stopping them in teardown, always: SIGTERM, then SIGKILL, then ``fusermount -uz``
  (``umount -l`` as root) as the last resort, agents before the serve, so no FUSE
  mount or process outlives the session.

Invariants:
- Nothing skips, in CI or not: a missing Python package, FUSE device, Node.js or
  daemon is a failure that names what is missing (``need()``), and under ``CI=true``
  any skip that still happens (a plugin's, say) fails the session in
  ``pytest_sessionfinish``.
- Tests share the session daemon but never each other's names: every test works
  under its own ``/t-<random>`` folder and its own ref names (``unique``).
"""
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO_ROOT / "python"
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

_skipped: List[str] = []


def need(condition: bool, reason: str) -> None:
    """Fails the test, loudly, when a prerequisite is missing: a test that cannot run
    must not pass for one that did."""
    if not condition:
        pytest.fail(f"a test prerequisite is missing: {reason}", pytrace=False)


def need_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        need(False, f"Python package {name!r} is not importable ({e}); run scripts/python-test")


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets a fixture's teardown know whether its test failed (item.roset_failed).
    outcome = yield
    if outcome.get_result().failed:
        item.roset_failed = True


def pytest_sessionfinish(session, exitstatus):
    if IN_CI and _skipped:
        sys.stderr.write("\nCI=true forbids skipped tests; skipped: %s\n" % ", ".join(_skipped))
        session.exitstatus = 1


# --------------------------------------------------------------------- daemon


def _log_tail(path: str, n: int) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL when it has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", "r", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4].replace("\\040", " ") == real:
                    return True
    except OSError:
        pass
    return os.path.ismount(real)


def _force_unmount(path: str) -> None:
    for tool in ("fusermount", "fusermount3"):
        exe = shutil.which(tool)
        if exe and _is_mounted(path):
            subprocess.run([exe, "-uz", path], check=False, capture_output=True, timeout=30)
    if _is_mounted(path) and os.geteuid() == 0:
        subprocess.run(["umount", "-l", path], check=False, capture_output=True, timeout=30)


def daemon_command() -> List[str]:
    explicit = os.environ.get("ROSET_MOUNT_BIN")
    if explicit:
        return explicit.split()
    return [shutil.which("node") or "node", str(REPO_ROOT / "bin" / "roset-mount.js")]


_built = False


def ensure_daemon_built() -> None:
    global _built
    if _built or os.environ.get("ROSET_MOUNT_BIN"):
        return
    need(shutil.which("node") is not None, "Node.js is not installed")
    need((REPO_ROOT / "bin" / "roset-mount.js").exists(), "bin/roset-mount.js is missing from the repository")
    if not (REPO_ROOT / "dist" / "cli" / "roset-mount.js").exists():
        npm = shutil.which("npm")
        need(npm is not None, "npm is not installed, and the daemon is not built")
        if not (REPO_ROOT / "node_modules").exists():
            subprocess.run([npm, "ci"], cwd=REPO_ROOT, check=True)
        subprocess.run([npm, "run", "build"], cwd=REPO_ROOT, check=True)
    _built = True


@dataclass
class Daemon:
    mountpoint: str
    state_dir: str
    cache_dir: str
    log_path: str
    proc: subprocess.Popen
    endpoint: str = ""
    api_key: str = ""
    mount_id: str = ""
    #: The CA of an HTTPS daemon (``--tls-cert``), trusted by ``client()``.
    ca_file: Optional[str] = None

    def client(self, **kwargs):
        import roset

        kwargs.setdefault("api_url", self.endpoint)
        kwargs.setdefault("api_key", self.api_key)
        if self.ca_file:
            kwargs.setdefault("ca_file", self.ca_file)
        return roset.Client(**kwargs)

    def env(self) -> Dict[str, str]:
        """Environment for a subprocess that should find this daemon by ROSET_* variables."""
        env = dict(os.environ)
        env.update(
            ROSET_API_URL=self.endpoint,
            ROSET_API_KEY=self.api_key,
            ROSET_MOUNT_PATH=self.mountpoint,
            PYTHONUNBUFFERED="1",
        )
        env.pop("ROSET_MOUNT_ID", None)
        env.pop("ROSET_CA_FILE", None)
        if self.ca_file:
            env["ROSET_CA_FILE"] = self.ca_file
        return env

    def log_tail(self, n: int = 60) -> str:
        return _log_tail(self.log_path, n)

    def stop(self) -> None:
        try:
            _stop_process(self.proc)
        finally:
            if _is_mounted(self.mountpoint):
                _force_unmount(self.mountpoint)


def start_daemon(
    base: Path,
    seal_timeout: float = 2,
    extra: Optional[List[str]] = None,
    ca_file: Optional[str] = None,
    agent_of: Optional["Serve"] = None,
) -> Daemon:
    """Start a roset-mount under ``base`` (``mnt``, ``state``, ``cache``, ``daemon.log``).

    With ``agent_of`` it is an agent of that ``roset serve`` (``--api-url``/``--api-key``,
    debug logs): it is ready once its ``daemon.json`` names its pid and the mount is
    up, and its client talks to the serve's API.
    """
    need(os.path.exists("/dev/fuse"), "/dev/fuse is missing: FUSE is not available")
    need(shutil.which("fusermount") or shutil.which("fusermount3"), "fusermount is not installed (apt-get install fuse3)")
    ensure_daemon_built()
    mnt, state, cache = base / "mnt", base / "state", base / "cache"
    for d in (mnt, state, cache):
        d.mkdir(parents=True, exist_ok=True)
    log_path = base / "daemon.log"
    cmd = daemon_command() + [
        str(mnt),
        "--state-dir", str(state),
        "--cache-dir", str(cache),
        "--log-level", "debug" if agent_of else "info",
    ]
    if agent_of is not None:
        # An agent runs no API and no seal of its own: roset serve owns both.
        cmd += ["--api-url", agent_of.endpoint, "--api-key", agent_of.api_key]
    else:
        cmd += ["--listen", "127.0.0.1:0", "--seal-timeout", str(seal_timeout)]
    # Last, so that a caller's --listen (an HTTPS daemon on every address) wins.
    cmd += list(extra or [])
    log_file = open(log_path, "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSET_")}
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), env=env)
    log_file.close()
    d = Daemon(str(mnt), str(state), str(cache), str(log_path), proc, ca_file=ca_file)
    deadline = time.monotonic() + 60
    endpoint_file, key_file = state / "endpoint", state / "api-key"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"roset-mount exited with {proc.returncode} before it was ready:\n{d.log_tail()}")
            if agent_of is not None:
                if _pid_file_names(state / "daemon.json", proc.pid) and _is_mounted(str(mnt)):
                    endpoint, key = agent_of.endpoint, agent_of.api_key
                    break
            elif endpoint_file.exists() and key_file.exists() and _is_mounted(str(mnt)):
                endpoint = endpoint_file.read_text().strip()
                key = key_file.read_text().strip()
                if endpoint and key:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"roset-mount was not ready after 60s:\n{d.log_tail()}")
            time.sleep(0.05)
        d.endpoint, d.api_key = endpoint, key
        mounts = d.client().list_mounts()
        d.mount_id = mounts[0].id if mounts else ""
    except BaseException:
        d.stop()
        raise
    return d


def _pid_file_names(path: Path, pid: int) -> bool:
    """True once the JSON file at ``path`` exists and its ``pid`` is ``pid``."""
    try:
        return json.loads(path.read_text()).get("pid") == pid
    except (OSError, ValueError, AttributeError):
        return False  # not there yet, or being written


@dataclass
class Serve:
    """A running ``roset serve``: the control plane alone, with no mount of its own."""

    state_dir: str
    store_dir: str
    log_path: str
    proc: subprocess.Popen
    endpoint: str = ""
    api_key: str = ""

    def client(self, **kwargs):
        import roset

        kwargs.setdefault("api_url", self.endpoint)
        kwargs.setdefault("api_key", self.api_key)
        return roset.Client(**kwargs)

    def log_tail(self, n: int = 60) -> str:
        return _log_tail(self.log_path, n)

    def stop(self) -> None:
        _stop_process(self.proc)


def start_serve(base: Path, seal_timeout: float = 10) -> Serve:
    """``roset serve`` under ``base`` (``state``, ``store``, ``serve.log``) on a free
    loopback port, SQLite metadata and a local directory store; ready once its
    ``serve.json`` names its pid."""
    ensure_daemon_built()
    state, store = base / "state", base / "store"
    for d in (state, store):
        d.mkdir(parents=True, exist_ok=True)
    log_path = base / "serve.log"
    cmd = [shutil.which("node") or "node", str(REPO_ROOT / "bin" / "roset.js"), "serve",
           "--state-dir", str(state),
           "--listen", "127.0.0.1:0",
           "--store", str(store),
           "--database", "sqlite:",
           "--seal-timeout", str(seal_timeout),
           "--log-level", "debug"]
    log_file = open(log_path, "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSET_")}
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), env=env)
    log_file.close()
    s = Serve(str(state), str(store), str(log_path), proc)
    deadline = time.monotonic() + 60
    try:
        while not _pid_file_names(state / "serve.json", proc.pid):
            if proc.poll() is not None:
                raise RuntimeError(f"roset serve exited with {proc.returncode} before it was ready:\n{s.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"roset serve was not ready after 60s:\n{s.log_tail()}")
            time.sleep(0.05)
        s.endpoint = (state / "endpoint").read_text().strip()
        s.api_key = (state / "api-key").read_text().strip()
        need(bool(s.endpoint and s.api_key), f"roset serve wrote no endpoint or api-key into {state}")
    except BaseException:
        s.stop()
        raise
    return s


@dataclass
class Cluster:
    """One ``roset serve`` and its agents, ``nodes[i]`` standing for node ``i + 1``;
    every agent serves the serve's default mount, so a folder has the same
    mount-relative path on every node."""

    root: str
    serve: Serve
    nodes: List[Daemon]

    def client(self, **kwargs):
        return self.serve.client(**kwargs)

    def logs(self, n: int = 80) -> str:
        """The tail of every log, for a failure message."""
        parts = [f"--- roset serve ({self.serve.log_path}) ---\n{self.serve.log_tail(n)}"]
        for i, d in enumerate(self.nodes):
            parts.append(f"--- node {i + 1} ({d.log_path}) ---\n{d.log_tail(n)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Agents first (each unmounts), then the serve; the directories go only when
        no mount is left in them."""
        errors = []
        for d in self.nodes:
            try:
                d.stop()
            except BaseException as e:  # noqa: BLE001 - stop the others, then raise
                errors.append(e)
        try:
            self.serve.stop()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        still = [d.mountpoint for d in self.nodes if _is_mounted(d.mountpoint)]
        if not still:
            shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise errors[0]
        assert not still, f"still mounted after teardown: {still}"


def start_cluster(base: Path, nodes: int = 3) -> Cluster:
    """``roset serve`` under ``base/serve`` and ``nodes`` agents of it under
    ``base/node1``...; whatever started is stopped, and ``base`` removed, when a
    part fails to come up."""
    try:
        serve = start_serve(base / "serve")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    c = Cluster(str(base), serve, [])
    try:
        for i in range(1, nodes + 1):
            c.nodes.append(start_daemon(base / f"node{i}", agent_of=serve))
    except BaseException:
        c.stop()
        raise
    return c


def _serve(tmp_path_factory, name):
    need_module("roset")
    # "roset-py-" in the path lets scripts/test find a mount a crash left behind.
    d = start_daemon(tmp_path_factory.mktemp(name), seal_timeout=2)
    try:
        yield d
    finally:
        d.stop()
        if d.proc.returncode not in (0, None, -signal.SIGTERM):
            sys.stderr.write(f"roset-mount exited with {d.proc.returncode}; log tail:\n{d.log_tail()}\n")
        assert not _is_mounted(d.mountpoint), f"{d.mountpoint} is still mounted after teardown"


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """The session's real roset-mount (seal timeout 2 s, so OPEN_HANDLES tests are quick)."""
    yield from _serve(tmp_path_factory, "roset-py-")


@pytest.fixture
def fresh_daemon(tmp_path_factory):
    """A roset-mount of the test's own, on an empty state directory."""
    yield from _serve(tmp_path_factory, "roset-py-fresh-")


@pytest.fixture
def cluster(request, tmp_path_factory):
    """A cluster of the test's own: one ``roset serve`` and three agents (three
    nodes), each on fresh directories, so a node's cache holds only what this test
    did through it. Stopped and removed after the test, failed or not; when the
    test failed, or a process died, the tails of all logs go to stderr first."""
    need_module("roset")
    c = start_cluster(tmp_path_factory.mktemp("roset-py-cluster-"), nodes=3)
    try:
        yield c
    finally:
        died = [f"{name} exited with {p.returncode}" for name, p in
                [("roset serve", c.serve.proc)] + [(f"node {i + 1}", d.proc) for i, d in enumerate(c.nodes)]
                if p.poll() is not None]
        if died or getattr(request.node, "roset_failed", False):
            sys.stderr.write("\n".join(died + [c.logs()]) + "\n")
        c.stop()


@pytest.fixture
def client(daemon):
    return daemon.client()


@pytest.fixture
def unique():
    """A short random token; tests build folder and ref names from it."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def workdir(daemon, unique):
    """A fresh folder at the top of the mount: (local path, mount-relative path)."""
    rel = f"/t-{unique}"
    local = daemon.mountpoint + rel
    os.makedirs(local)
    return local, rel


def run_script(name: str, args: List[str], env: Dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run tests/scripts/<name> with this interpreter; output is returned, failures show it."""
    cmd = [sys.executable, str(SCRIPTS_DIR / name)] + [str(a) for a in args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{name} exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def read_json(path: str):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)
