"""`roset.Client`: the HTTP client for the Roset `/v1` API.

Owns: every call the SDK makes to the API, the retry policy, and the mapping of
error responses to :mod:`roset.exceptions`. The public method names and parameters
are those of the original SDK README (design §6) and must not change; extra
helpers (``list_*``, ``get_manifest``, ``wait_for_commit_group``...) may be added.

Invariants:
- Only the standard library is used, so ``pip install roset`` pulls nothing else.
- Transient failures are retried up to ``max_retries`` times with jittered
  exponential backoff; a ``Retry-After`` header (seconds or HTTP date) replaces
  the computed delay. Transient means: 429, any 5xx, and network errors.
- A request that may have reached the server is only repeated when repeating it
  is harmless: GET/PUT/DELETE and the read-only ``POST /v1/resolve`` always; other
  POSTs (create, commit, seal) only when the connection was never made or the
  server said it did not process them (429, 502, 503, 504). So a commit is never
  issued twice because a response was lost.
- ``resolve_path`` and ``get_ref`` return ``None`` for a missing path or ref;
  every other lookup raises :class:`RosetNotFoundError`.
- The API key is never logged or shown in ``repr``.
- An ``https://`` API is checked against the system's CAs, or only against the CA
  file named by ``ca_file`` / ``ROSET_CA_FILE`` (a private deployment). A TLS
  failure (unknown authority, a certificate that does not name the host, an
  expired one, a server without TLS) raises :class:`RosetConnectionError` with
  code ``TLS_ERROR`` at once, naming the URL and the cause: it is never retried.
"""
import email.utils
import http.client
import json
import logging
import os
import random
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ._version import __version__
from ._config import resolve_config
from .exceptions import (
    RosetAPIError,
    RosetAuthenticationError,
    RosetCommitFailedError,
    RosetConflictError,
    RosetConnectionError,
    RosetError,
    RosetNotFoundError,
    RosetTimeoutError,
)
from .models import (
    AutoCommitRules,
    Commit,
    CommitGroup,
    Manifest,
    Mount,
    Node,
    Page,
    Ref,
    RefLogEntry,
)

__all__ = ["Client"]

log = logging.getLogger("roset")

PathLike = Union[str, "os.PathLike[str]"]

# Statuses after which a POST can be repeated safely: the server (or a proxy in
# front of it) tells us it did not act on the request.
_POST_SAFE_STATUSES = frozenset({429, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Read-only POST routes, safe to repeat after any failure.
_READ_ONLY_POSTS = frozenset({"/v1/resolve"})


def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")


def _mount_path(path: PathLike) -> str:
    """Normalise a mount-relative path: leading "/", no trailing "/", no "//"."""
    text = os.fspath(path)
    parts = [p for p in text.split("/") if p]
    return "/" + "/".join(parts)


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


# OpenSSL verify codes of a chain that leads to no trusted CA, and of a certificate
# out of its validity period.
_UNKNOWN_AUTHORITY = frozenset({2, 18, 19, 20, 21, 27})
_OUT_OF_DATE = frozenset({9, 10})
_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address

# One SSL context per CA file and version of it (contexts are not picklable, so they
# live here, not on the Client, which Ray pickles).
_contexts: Dict[Tuple[str, int, int], ssl.SSLContext] = {}


def _tls_error(message: str) -> RosetConnectionError:
    err = RosetConnectionError(message)
    err.code = "TLS_ERROR"
    return err


def _ssl_context(ca_file: Optional[str]) -> Optional[ssl.SSLContext]:
    """A context trusting only the CAs in ``ca_file``; ``None`` (the system's CAs) without one."""
    if not ca_file:
        return None
    path = os.path.abspath(ca_file)
    try:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=path)
            _contexts[key] = ctx
        return ctx
    except (OSError, ssl.SSLError) as e:
        raise _tls_error(f"cannot read the CA file {ca_file} ({e}): check ca_file= or ROSET_CA_FILE") from None


def _tls_failure(err: BaseException, url: str, ca_file: Optional[str]) -> Optional[RosetConnectionError]:
    """The error to raise when ``err`` is a TLS failure of a request to ``url``, else ``None``."""
    reason = getattr(err, "reason", None)
    e = reason if isinstance(reason, ssl.SSLError) else err
    # A connection cut mid-handshake is an accident like any reset: retried as usual.
    if not isinstance(e, ssl.SSLError) or isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)):
        return None
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(e, ssl.SSLCertVerificationError):
        code, why = e.verify_code, e.verify_message or str(e)
        if code in _UNKNOWN_AUTHORITY:
            fix = f"the CA in {ca_file} did not sign it" if ca_file else "pass ca_file= or set ROSET_CA_FILE to the CA that signed it"
            return _tls_error(f"cannot trust {url}: certificate signed by an unknown authority ({why}): {fix}")
        if code in _NAME_MISMATCH:
            return _tls_error(f"cannot trust {url}: its certificate does not name {host} ({why}): use a host name or address the certificate holds")
        if code in _OUT_OF_DATE:
            return _tls_error(f"cannot trust {url}: {why}: renew the certificate, or check the clocks")
        return _tls_error(f"cannot trust {url}: {why}")
    if getattr(e, "reason", None) in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"):
        return _tls_error(f"cannot speak TLS to {url} ({e.reason}): the server answers without TLS; use an http:// URL")
    return _tls_error(f"TLS with {url} failed: {e}")


def _was_never_sent(err: BaseException) -> bool:
    """True when the request certainly did not reach the server."""
    reason = getattr(err, "reason", err)
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


class _Transient(Exception):
    """Internal: one attempt failed in a way that may be retried."""

    def __init__(self, error: BaseException, retry_after: Optional[float], sent: bool, status: Optional[int]):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.sent = sent
        self.status = status


class Client:
    """Client for the Roset API.

    Args:
        api_url: base URL, e.g. ``http://127.0.0.1:7070``. Falls back to
            ``ROSET_API_URL``, then the state directory's ``endpoint`` file, then
            ``http://127.0.0.1:7070``.
        api_key: ``rsk_...``. Falls back to ``ROSET_API_KEY``, then the state
            directory's ``api-key`` file (only for a loopback API).
        mount_id: sent as ``X-Roset-Mount-Id``; falls back to ``ROSET_MOUNT_ID``;
            when unset the server's default mount is used.
        timeout: seconds for each HTTP request.
        max_retries: how many times a transient failure is retried.
        ca_file: PEM file of the CA that signed an ``https://`` API's certificate,
            trusted instead of the system's CAs; falls back to ``ROSET_CA_FILE``.
    """

    #: Backoff before retry n (0-based) is drawn from [d/2, d], d = min(cap, base * 2**n).
    backoff_base = 0.25
    backoff_cap = 8.0
    #: A Retry-After longer than this is shortened to it, so a misbehaving proxy
    #: cannot park a training loop for an hour.
    max_retry_after = 60.0

    def __init__(
        self,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        mount_id: Optional[str] = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        ca_file: Optional[str] = None,
    ) -> None:
        cfg = resolve_config(api_url, api_key, mount_id, ca_file=ca_file)
        self.api_url: str = cfg.api_url
        self.api_key: Optional[str] = cfg.api_key
        self.mount_id: Optional[str] = cfg.mount_id
        self.state_dir: str = cfg.state_dir
        self.ca_file: Optional[str] = cfg.ca_file
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        # Tests replace these to observe backoff without sleeping.
        self._sleep: Callable[[float], None] = time.sleep
        self._random: Callable[[float, float], float] = random.uniform

    def __repr__(self) -> str:
        key = "set" if self.api_key else "unset"
        return f"roset.Client(api_url={self.api_url!r}, mount_id={self.mount_id!r}, api_key=<{key}>)"

    # ------------------------------------------------------------------ HTTP

    def _headers(self, has_body: bool) -> Dict[str, str]:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"roset-python/{__version__}",
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.mount_id:
            headers["X-Roset-Mount-Id"] = self.mount_id
        return headers

    def _backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        return self._random(ceiling / 2.0, ceiling)

    def _error_from_response(self, status: int, body: bytes) -> RosetAPIError:
        code, message, details = f"HTTP_{status}", "", {}
        try:
            payload = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            err = payload["error"]
            code = str(err.get("code") or code)
            message = str(err.get("message") or "")
            details = err.get("details") if isinstance(err.get("details"), dict) else {}
        else:
            message = body[:300].decode("utf-8", "replace").strip() or http.client.responses.get(status, "")
        cls = RosetAPIError
        if status == 404:
            cls = RosetNotFoundError
        elif status == 409:
            cls = RosetConflictError
        elif status in (401, 403):
            cls = RosetAuthenticationError
        return cls(code, message, status, details)

    def _once(self, method: str, url: str, data: Optional[bytes]) -> Tuple[int, bytes]:
        req = urllib.request.Request(url, data=data, method=method, headers=self._headers(data is not None))
        context = _ssl_context(self.ca_file) if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            try:
                body = e.read()
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                e.close()
            status = e.code
            if status == 429 or status >= 500:
                retry_after = _parse_retry_after(e.headers.get("Retry-After") if e.headers else None)
                raise _Transient(self._error_from_response(status, body), retry_after, True, status) from None
            raise self._error_from_response(status, body) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            # An answer about the certificate, not an accident: raised at once, never retried.
            tls = _tls_failure(e, self.api_url, self.ca_file)
            if tls is not None:
                raise tls from None
            raise _Transient(e, None, not _was_never_sent(e), None) from None

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Optional[Dict[str, Any]] = None,
    ) -> Any:
        url = self.api_url + path
        if params:
            query = {k: v for k, v in params.items() if v is not None}
            if query:
                url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        repeatable = method in _IDEMPOTENT or path in _READ_ONLY_POSTS
        attempt = 0
        while True:
            try:
                status, raw = self._once(method, url, data)
                break
            except _Transient as t:
                safe = repeatable or not t.sent or (t.status in _POST_SAFE_STATUSES)
                if attempt >= self.max_retries or not safe:
                    if isinstance(t.error, RosetError):
                        raise t.error from None
                    raise RosetConnectionError(
                        f"{method} {url} failed after {attempt + 1} attempt(s): {t.error}"
                    ) from t.error
                delay = self._backoff(attempt, t.retry_after)
                log.debug("roset: %s %s failed (%s); retry %d in %.2fs", method, path, t.error, attempt + 1, delay)
                self._sleep(delay)
                attempt += 1
        if status == 204 or not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RosetAPIError("INVALID_RESPONSE", f"{method} {path}: response is not JSON: {e}", status) from None

    def _pages(self, path: str, params: Optional[Dict[str, Any]] = None) -> Iterator[Dict[str, Any]]:
        params = dict(params or {})
        while True:
            page = self._request("GET", path, params=params)
            for item in page.get("items") or []:
                yield item
            cursor = page.get("nextCursor")
            if not cursor:
                return
            params["cursor"] = cursor

    # ------------------------------------------------------------ service

    def health(self) -> Dict[str, Any]:
        """``GET /health`` (no key needed)."""
        return self._request("GET", "/health")

    def list_mounts(self) -> List[Mount]:
        return [Mount.from_dict(m) for m in self._pages("/v1/mounts")]

    def create_mount(self, name: str) -> Mount:
        return Mount.from_dict(self._request("POST", "/v1/mounts", {"name": name}))

    # -------------------------------------------------------------- nodes

    def get_node(self, node_id: str) -> Node:
        """Return the node; raises :class:`RosetNotFoundError` if it does not exist."""
        return Node.from_dict(self._request("GET", f"/v1/nodes/{_quote(node_id)}"))

    def resolve_paths(self, paths: Sequence[PathLike]) -> Dict[str, Optional[Node]]:
        """Resolve several mount-relative paths in one call; missing ones map to ``None``."""
        wanted = [_mount_path(p) for p in paths]
        answer = self._request("POST", "/v1/resolve", {"paths": wanted}) or {}
        nodes = answer.get("nodes") or {}
        return {p: (Node.from_dict(nodes[p]) if nodes.get(p) else None) for p in wanted}

    def resolve_path(self, path: PathLike) -> Optional[Node]:
        """Return the node at a mount-relative path such as ``/checkpoints/step-1``, or ``None``."""
        return self.resolve_paths([path])[_mount_path(path)]

    def create_folder(self, parent: Union[PathLike, Node], name: str) -> Node:
        """Create folder ``name`` under ``parent`` (a mount-relative path or a :class:`Node`).

        A parent given as a path is created first if it is missing, as ``mkdir -p``
        does. Raises :class:`RosetConflictError` (``NODE_EXISTS``) if ``name`` already
        exists.
        """
        body: Dict[str, Any] = {"name": name, "type": "folder"}
        if isinstance(parent, Node):
            body["parentId"] = parent.id
        else:
            body["parentPath"] = _mount_path(parent)
        return Node.from_dict(self._request("POST", "/v1/nodes", body))

    def list_children(self, node_id: str, limit: Optional[int] = None) -> List[Node]:
        return [Node.from_dict(n) for n in self._pages(f"/v1/nodes/{_quote(node_id)}/children", {"limit": limit})]

    def delete_node(self, node_id: str) -> Node:
        """Soft-delete a node (it goes to the trash; committed data stays until purged)."""
        return Node.from_dict(self._request("DELETE", f"/v1/nodes/{_quote(node_id)}"))

    # ------------------------------------------------------------ commits

    def commit(self, node_id: str, message: Optional[str] = None, group_id: Optional[str] = None) -> Commit:
        """Seal and commit a folder. Returns at once with a ``pending`` commit."""
        body: Dict[str, Any] = {}
        if message is not None:
            body["message"] = message
        if group_id is not None:
            body["groupId"] = group_id
        return Commit.from_dict(self._request("POST", f"/v1/nodes/{_quote(node_id)}/commit", body))

    def get_commit(self, commit_id: str) -> Commit:
        return Commit.from_dict(self._request("GET", f"/v1/commits/{_quote(commit_id)}"))

    def wait_for_commit(
        self,
        commit_id: str,
        timeout: Optional[float] = 60,
        poll_interval: float = 0.05,
        on_progress: Optional[Callable[[Commit], None]] = None,
        progress: bool = False,
    ) -> Commit:
        """Poll until the commit leaves ``pending``.

        Returns the ``completed`` commit. Raises :class:`RosetCommitFailedError`
        (a :class:`RosetAPIError` whose ``code`` is the commit's error code, e.g.
        ``OPEN_HANDLES``) if it failed, and :class:`RosetTimeoutError` if it is
        still pending after ``timeout`` seconds (``None``: wait for ever).

        ``on_progress`` is called with the commit on every poll, the last one
        included (``commit.progress`` is set while it is pending). ``progress=True``
        shows a tqdm bar of the bytes uploaded when tqdm is installed (nothing
        otherwise).
        """
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        interval = max(0.01, poll_interval)
        bar = _ProgressBar(commit_id) if progress else None
        try:
            while True:
                commit = self.get_commit(commit_id)
                if on_progress is not None:
                    on_progress(commit)
                if bar is not None:
                    bar.update(commit)
                if commit.is_completed:
                    return commit
                if commit.is_failed:
                    err = commit.error
                    raise RosetCommitFailedError(
                        err.code if err else "COMMIT_FAILED",
                        f"commit {commit.id} of {commit.path} failed: {err.message if err else 'no reason given'}",
                        commit,
                    )
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise RosetTimeoutError(
                            f"commit {commit_id} of {commit.path} still {commit.status} after {timeout}s",
                            commit_id=commit_id,
                        )
                    time.sleep(min(interval, remaining))
                else:
                    time.sleep(interval)
                # Grow the interval: fast for small checkpoints, gentle on the API for big ones.
                interval = min(interval * 1.5, 1.0)
        finally:
            if bar is not None:
                bar.close()

    def list_commits(
        self,
        node_id: Optional[str] = None,
        status: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> List[Commit]:
        """All matching commits, newest first."""
        params = {"nodeId": node_id, "status": status, "limit": limit}
        return [Commit.from_dict(c) for c in self._pages("/v1/commits", params)]

    def get_manifest(self, commit_id: str) -> Manifest:
        return Manifest.from_dict(self._request("GET", f"/v1/commits/{_quote(commit_id)}/manifest"))

    # --------------------------------------------------------------- refs

    def get_ref(self, name: str) -> Optional[Ref]:
        """Return the ref with its commit, or ``None`` if there is no such ref."""
        try:
            return Ref.from_dict(self._request("GET", f"/v1/refs/{_quote(name)}"))
        except RosetNotFoundError as e:
            if e.code in ("REF_NOT_FOUND", "HTTP_404"):
                return None
            raise

    def update_ref(self, name: str, commit_id: str, expected_commit_id: Optional[str] = None) -> Ref:
        """Point ``name`` at a completed commit, atomically.

        With ``expected_commit_id`` it is a compare-and-swap: if the ref does not
        point there (or exists, when ``expected_commit_id`` names nothing), raises
        :class:`RosetConflictError` with code ``REF_CONFLICT``.
        """
        body: Dict[str, Any] = {"commitId": commit_id}
        if expected_commit_id is not None:
            body["expectedCommitId"] = expected_commit_id
        return Ref.from_dict(self._request("PUT", f"/v1/refs/{_quote(name)}", body))

    def delete_ref(self, name: str) -> None:
        self._request("DELETE", f"/v1/refs/{_quote(name)}")

    def list_refs(self) -> List[Ref]:
        return [Ref.from_dict(r) for r in self._pages("/v1/refs")]

    def get_ref_log(self, name: str) -> List[RefLogEntry]:
        """Every move of the ref, oldest first."""
        return [RefLogEntry.from_dict(e) for e in self._pages(f"/v1/refs/{_quote(name)}/log")]

    # ------------------------------------------------------------- auto-commit rules

    def _rules_mount(self, mount_id: Optional[str]) -> str:
        """The mount a rules call addresses: named, this client's, or the server's default (that of its root)."""
        m = mount_id or self.mount_id
        if m:
            return m
        root = self.resolve_path("/")
        if root is None or not root.mount_id:
            raise RosetNotFoundError("MOUNT_NOT_FOUND", "The server has no default mount: pass mount_id", 404)
        return root.mount_id

    def get_auto_commit_rules(self, mount_id: Optional[str] = None) -> AutoCommitRules:
        """The mount's auto-commit rules (this client's mount, else the server's default)."""
        m = self._rules_mount(mount_id)
        return AutoCommitRules.from_dict(self._request("GET", f"/v1/mounts/{_quote(m)}/auto-commit"))

    def set_auto_commit_rules(self, rules: Sequence[str], expected_version: Optional[int] = None,
                              mount_id: Optional[str] = None) -> AutoCommitRules:
        """Replace the mount's auto-commit rules (an empty list removes them all).

        A bad rule raises :class:`RosetAPIError` with code ``INVALID_AUTO_COMMIT_RULE``
        and changes nothing. With ``expected_version`` it is a compare-and-swap: if the
        rules moved on, raises :class:`RosetConflictError` (``AUTO_COMMIT_CONFLICT``).
        """
        m = self._rules_mount(mount_id)
        body: Dict[str, Any] = {"rules": list(rules)}
        if expected_version is not None:
            body["expectedVersion"] = expected_version
        return AutoCommitRules.from_dict(self._request("PUT", f"/v1/mounts/{_quote(m)}/auto-commit", body))

    def add_auto_commit_rule(self, rule: str, mount_id: Optional[str] = None) -> AutoCommitRules:
        """Add one rule (nothing if it is there), by compare-and-swap, again while another change wins."""
        return self._edit_auto_commit_rules(lambda rules: None if rule in rules else rules + [rule], mount_id)

    def remove_auto_commit_rule(self, rule: str, mount_id: Optional[str] = None) -> AutoCommitRules:
        """Remove one rule (nothing if it is not there), as :meth:`add_auto_commit_rule`."""
        return self._edit_auto_commit_rules(lambda rules: [r for r in rules if r != rule] if rule in rules else None, mount_id)

    def _edit_auto_commit_rules(self, change: Callable[[List[str]], Optional[List[str]]], mount_id: Optional[str]) -> AutoCommitRules:
        m = self._rules_mount(mount_id)
        attempt = 0
        while True:
            attempt += 1
            cur = self.get_auto_commit_rules(m)
            nxt = change(list(cur.rules))
            if nxt is None:
                return cur
            try:
                return self.set_auto_commit_rules(nxt, expected_version=cur.version, mount_id=m)
            except RosetConflictError as e:
                if e.code != "AUTO_COMMIT_CONFLICT" or attempt >= 10:
                    raise

    # ------------------------------------------------------------- groups

    def create_commit_group(self, message: Optional[str] = None) -> CommitGroup:
        body: Dict[str, Any] = {}
        if message is not None:
            body["message"] = message
        return CommitGroup.from_dict(self._request("POST", "/v1/commit-groups", body))

    def get_commit_group(self, group_id: str) -> CommitGroup:
        return CommitGroup.from_dict(self._request("GET", f"/v1/commit-groups/{_quote(group_id)}"))

    def seal_commit_group(self, group_id: str) -> CommitGroup:
        """Seal the group: its commits then complete together or fail together.

        Returns at once; the group stays ``pending`` until all its commits finish.
        Use :meth:`wait_for_commit_group` to wait.
        """
        return CommitGroup.from_dict(self._request("POST", f"/v1/commit-groups/{_quote(group_id)}/seal", {}))

    def wait_for_commit_group(self, group_id: str, timeout: Optional[float] = 60, poll_interval: float = 0.05) -> CommitGroup:
        """Poll until the group is ``committed`` (returned) or ``failed`` (raises).

        A failed group raises :class:`RosetCommitFailedError` carrying the error code
        of a failed member commit when there is one, else ``GROUP_FAILED``.
        """
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        interval = max(0.01, poll_interval)
        while True:
            group = self.get_commit_group(group_id)
            if group.status == "committed":
                return group
            if group.status == "failed":
                code, message, failed = "GROUP_FAILED", f"commit group {group_id} failed", None
                for cid in group.commit_ids:
                    c = self.get_commit(cid)
                    if c.is_failed and c.error and c.error.code != "GROUP_FAILED":
                        code, message, failed = c.error.code, f"commit group {group_id} failed: {c.error.message}", c
                        break
                raise RosetCommitFailedError(code, message, failed)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RosetTimeoutError(f"commit group {group_id} still {group.status} after {timeout}s", group_id=group_id)
                time.sleep(min(interval, remaining))
            else:
                time.sleep(interval)
            interval = min(interval * 1.5, 1.0)


class _ProgressBar:
    """A tqdm bar of a commit's uploaded bytes, or nothing when tqdm is not installed."""

    def __init__(self, commit_id: str) -> None:
        self._bar: Any = None
        self._commit_id = commit_id
        try:
            from tqdm.auto import tqdm  # optional dependency
        except ImportError:
            log.debug("progress=True needs tqdm; waiting without a bar")
            self._tqdm = None
        else:
            self._tqdm = tqdm

    def update(self, commit: Commit) -> None:
        if self._tqdm is None:
            return
        p = commit.progress
        if self._bar is None:
            self._bar = self._tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=commit.path or self._commit_id, leave=True)
        bar = self._bar
        if commit.is_completed:
            total = commit.stats.bytes
            if bar.total != total:
                bar.total = total
            bar.n = total
            bar.set_postfix_str(f"{commit.stats.files} files, completed", refresh=False)
            bar.refresh()
            return
        if p is None:
            bar.set_postfix_str(commit.status)
            return
        if p.bytes_total and bar.total != p.bytes_total:
            bar.total = p.bytes_total
        bar.n = p.bytes_uploaded
        bar.set_postfix_str(f"{p.phase} {p.files_done}/{p.files_total} files", refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
