"""Test fixtures: a real `roset-mount` daemon per test session, and strict CI rules.

Owns:
- building the TypeScript daemon when it is not built yet (``npm ci`` when
  ``node_modules`` is missing, then ``npm run build``);
- starting ``node bin/roset-mount.js MNT --state-dir S --cache-dir C --listen
  127.0.0.1:0 --seal-timeout 2`` in fresh temporary directories, waiting for its
  ``endpoint`` and ``api-key`` files, and handing tests a :class:`Daemon`;
- stopping it in teardown, always: SIGTERM, then SIGKILL, then ``fusermount -uz``
  as the last resort, so no FUSE mount or daemon outlives the session.

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


def pytest_sessionfinish(session, exitstatus):
    if IN_CI and _skipped:
        sys.stderr.write("\nCI=true forbids skipped tests; skipped: %s\n" % ", ".join(_skipped))
        session.exitstatus = 1


# --------------------------------------------------------------------- daemon


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
        try:
            with open(self.log_path, "r", encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            if _is_mounted(self.mountpoint):
                _force_unmount(self.mountpoint)


def start_daemon(base: Path, seal_timeout: float = 2, extra: Optional[List[str]] = None, ca_file: Optional[str] = None) -> Daemon:
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
        "--listen", "127.0.0.1:0",
        "--seal-timeout", str(seal_timeout),
        "--log-level", "info",
    ] + list(extra or [])
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
            if endpoint_file.exists() and key_file.exists() and _is_mounted(str(mnt)):
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
