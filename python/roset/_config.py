"""Where the Python SDK finds the API (design §5), mirroring the TypeScript SDK.

Owns: the resolution order of the API URL, key and mount id.

Order, per setting: explicit argument → ``ROSET_API_URL`` / ``ROSET_API_KEY`` /
``ROSET_MOUNT_ID`` → the state directory's ``endpoint`` / ``api-key`` files (written
by the embedded ``roset-mount`` daemon) → ``http://127.0.0.1:7070`` (no key, no
mount id: the server's default mount).
State directory: ``ROSET_STATE_DIR`` → ``/var/lib/roset`` for root →
``~/.local/state/roset``.
CA file (the PEM CA an ``https://`` API's certificate is checked against, instead
of the system's): explicit argument → ``ROSET_CA_FILE`` → none.

Invariants:
- An empty or blank value counts as unset, so ``ROSET_API_KEY=`` in an environment
  file does not hide the key file.
- The local key file is a secret of this machine's daemon: it is only sent to an API
  on a loopback address (or to the URL read from the same state directory). An
  explicit remote ``api_url`` never receives it by accident.
"""
import ipaddress
import os
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlsplit

DEFAULT_API_URL = "http://127.0.0.1:7070"
ENDPOINT_FILE = "endpoint"
API_KEY_FILE = "api-key"


def _non_empty(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = value.strip()
    return value or None


def default_state_dir(env: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if env is None else env
    explicit = _non_empty(env.get("ROSET_STATE_DIR"))
    if explicit:
        return os.path.abspath(explicit)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/var/lib/roset"
    return os.path.join(os.path.expanduser("~"), ".local", "state", "roset")


def _read_state_file(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return _non_empty(f.read())
    except OSError:
        return None


def normalize_api_url(url: str) -> str:
    """The daemon writes a URL, but people edit these files: accept bare host:port."""
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ResolvedConfig:
    api_url: str
    api_key: Optional[str]
    mount_id: Optional[str]
    state_dir: str
    api_url_source: str
    api_key_source: Optional[str]
    ca_file: Optional[str] = None


def resolve_config(
    api_url: Optional[str] = None,
    api_key: Optional[str] = None,
    mount_id: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    ca_file: Optional[str] = None,
) -> ResolvedConfig:
    env = os.environ if env is None else env
    state_dir = default_state_dir(env)

    url = _non_empty(api_url)
    url_source = "argument"
    if url is None:
        url = _non_empty(env.get("ROSET_API_URL"))
        url_source = "env"
    if url is None:
        url = _read_state_file(os.path.join(state_dir, ENDPOINT_FILE))
        url_source = "state-dir"
    if url is None:
        url = DEFAULT_API_URL
        url_source = "default"
    url = normalize_api_url(url)

    key = _non_empty(api_key)
    key_source: Optional[str] = "argument" if key else None
    if key is None:
        key = _non_empty(env.get("ROSET_API_KEY"))
        key_source = "env" if key else None
    if key is None and (url_source in ("state-dir", "default") or is_loopback_url(url)):
        key = _read_state_file(os.path.join(state_dir, API_KEY_FILE))
        key_source = "state-dir" if key else None

    mount = _non_empty(mount_id) or _non_empty(env.get("ROSET_MOUNT_ID"))
    return ResolvedConfig(
        api_url=url,
        api_key=key,
        mount_id=mount,
        state_dir=state_dir,
        api_url_source=url_source,
        api_key_source=key_source,
        ca_file=_non_empty(ca_file) or _non_empty(env.get("ROSET_CA_FILE")),
    )
