"""Exceptions raised by the Roset Python SDK.

Owns: the exception hierarchy that callers catch. The names and the base-class
relations are the public contract of the original SDK README and must not change:

    RosetError                      anything the SDK raises on purpose
    ├── RosetAPIError               the API answered with an error (.code .message .status)
    │   ├── RosetNotFoundError      404: no such node, commit, ref, group, mount
    │   ├── RosetConflictError      409: stale compare-and-swap, name exists, commit busy
    │   ├── RosetAuthenticationError 401/403: missing or wrong API key
    │   └── RosetCommitFailedError  a commit finished in status `failed` (code from the commit)
    ├── RosetConnectionError        the API could not be reached, even after retries,
    │                               or its TLS certificate was refused (code TLS_ERROR)
    └── RosetTimeoutError           waiting for a commit or group ran out of time

Invariant: `code` is always the server's wire code (e.g. `REF_CONFLICT`,
`OPEN_HANDLES`) when the server sent one, so callers match on `code`, never on
`message`. Client-side codes mirror the TypeScript SDK: `NETWORK_ERROR`, `TLS_ERROR`,
`TIMEOUT`.
"""
from typing import Any, Dict, Optional

__all__ = [
    "RosetError",
    "RosetAPIError",
    "RosetNotFoundError",
    "RosetConflictError",
    "RosetAuthenticationError",
    "RosetCommitFailedError",
    "RosetConnectionError",
    "RosetTimeoutError",
]


class RosetError(Exception):
    """Base class of every error the SDK raises."""


class RosetAPIError(RosetError):
    """The API answered with an error, or a commit ended in an error.

    Attributes:
        code: the stable wire code, e.g. ``NODE_NOT_FOUND`` or ``OPEN_HANDLES``.
        message: the human-readable message from the server.
        status: the HTTP status, or ``None`` when the error did not come from an
            HTTP response (a commit that failed asynchronously).
        details: the ``details`` object of the error body (may be empty).
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: Optional[int] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.details: Dict[str, Any] = dict(details or {})
        super().__init__(code, message, status)

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status={self.status!r})"


class RosetNotFoundError(RosetAPIError):
    """404: the node, commit, ref, group or mount does not exist."""


class RosetConflictError(RosetAPIError):
    """409: e.g. ``REF_CONFLICT`` on a stale compare-and-swap, ``NODE_EXISTS``,
    ``COMMIT_IN_PROGRESS`` or ``COMMIT_NOT_COMPLETED``."""


class RosetAuthenticationError(RosetAPIError):
    """401 or 403: the API key is missing or wrong."""


class RosetCommitFailedError(RosetAPIError):
    """A commit ended in status ``failed``.

    ``code`` and ``message`` are the commit's own error (e.g. ``OPEN_HANDLES``,
    ``STORAGE_ERROR``); ``commit`` is the failed :class:`roset.Commit`.
    """

    def __init__(self, code: str, message: str, commit: Any = None) -> None:
        super().__init__(code, message, None)
        self.commit = commit


class RosetConnectionError(RosetError):
    """The API could not be reached (refused, reset, DNS, timeout) after all retries
    (``code`` ``NETWORK_ERROR``), or TLS with it failed: an untrusted, mismatched or
    expired certificate, or a server without TLS (``code`` ``TLS_ERROR``, raised at
    once, never retried)."""

    code = "NETWORK_ERROR"


class RosetTimeoutError(RosetError, TimeoutError):
    """Waiting for a commit or a commit group took longer than the given timeout.

    The commit itself is not cancelled: it may still complete later. ``commit_id``
    (or ``group_id``) names what was being waited for.
    """

    code = "TIMEOUT"

    def __init__(self, message: str, commit_id: Optional[str] = None, group_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.commit_id = commit_id
        self.group_id = group_id
