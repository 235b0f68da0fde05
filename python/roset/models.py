"""Typed models for the objects of the Roset `/v1` API.

Owns: the translation from the camelCase wire JSON (design §4) to snake_case
dataclasses. Each model has ``from_dict`` and keeps the JSON it was built from in
``raw`` (excluded from equality and repr).

Invariants:
- Unknown wire fields are ignored, so a newer server never breaks an older SDK;
  they remain readable through ``raw``.
- Missing optional fields become ``None`` (or an empty value), never KeyError.
- Timestamps are timezone-aware ``datetime`` objects in UTC, or ``None``.
"""
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Generic, List, Optional, TypeVar

__all__ = [
    "Mount",
    "Node",
    "CommitError",
    "CommitStats",
    "Commit",
    "Ref",
    "RefLogEntry",
    "CommitGroup",
    "ManifestFile",
    "Manifest",
    "Page",
]


def _ts(value: Any) -> Optional[datetime]:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    text = str(value)
    # datetime.fromisoformat only accepts a trailing "Z" from Python 3.11 on.
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass
class Mount:
    id: str
    name: str
    store: Optional[str] = None
    created_at: Optional[datetime] = None
    mountpoints: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Mount":
        return cls(
            id=d["id"],
            name=d.get("name", ""),
            store=d.get("store"),
            created_at=_ts(d.get("createdAt")),
            mountpoints=list(d.get("mountpoints") or []),
            raw=dict(d),
        )


@dataclass
class Node:
    """A file or folder in the mount's namespace. ``path`` is mount-relative ("/a/b")."""

    id: str
    mount_id: Optional[str]
    parent_id: Optional[str]
    path: str
    name: str
    type: str
    size: int = 0
    state: str = "staging"
    commit_id: Optional[str] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    deleted_at: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Node":
        return cls(
            id=d["id"],
            mount_id=d.get("mountId"),
            parent_id=d.get("parentId"),
            path=d.get("path", ""),
            name=d.get("name", ""),
            type=d.get("type", "folder"),
            size=_int(d.get("size")),
            state=d.get("state", "staging"),
            commit_id=d.get("commitId"),
            created_at=_ts(d.get("createdAt")),
            updated_at=_ts(d.get("updatedAt")),
            deleted_at=_ts(d.get("deletedAt")),
            raw=dict(d),
        )

    @property
    def is_folder(self) -> bool:
        return self.type == "folder"

    @property
    def is_committed(self) -> bool:
        return self.state == "committed"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass
class CommitError:
    code: str
    message: str

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> Optional["CommitError"]:
        if not d:
            return None
        return cls(code=str(d.get("code") or "UNKNOWN"), message=str(d.get("message") or ""))


@dataclass
class CommitStats:
    files: int = 0
    bytes: int = 0
    uploaded_bytes: int = 0
    deduped_bytes: int = 0

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "CommitStats":
        d = d or {}
        return cls(
            files=_int(d.get("files")),
            bytes=_int(d.get("bytes")),
            uploaded_bytes=_int(d.get("uploadedBytes")),
            deduped_bytes=_int(d.get("dedupedBytes")),
        )


@dataclass
class CommitProgress:
    """How far a pending commit has come: ``phase`` is ``sealing``, ``uploading`` or
    ``manifest``; totals are the sealed snapshot's staged files and bytes (0 while
    sealing); ``files_done`` and ``bytes_uploaded`` count files as each one is in the
    bucket."""

    phase: str = "sealing"
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_uploaded: int = 0

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> Optional["CommitProgress"]:
        if not d:
            return None
        return cls(
            phase=str(d.get("phase", "sealing")),
            files_total=_int(d.get("filesTotal")),
            files_done=_int(d.get("filesDone")),
            bytes_total=_int(d.get("bytesTotal")),
            bytes_uploaded=_int(d.get("bytesUploaded")),
        )


@dataclass
class Commit:
    """A commit of one folder. ``status`` is ``pending``, ``completed`` or ``failed``."""

    id: str
    mount_id: Optional[str]
    node_id: Optional[str]
    path: str
    message: Optional[str] = None
    group_id: Optional[str] = None
    status: str = "pending"
    error: Optional[CommitError] = None
    stats: CommitStats = field(default_factory=CommitStats)
    created_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Set while the commit is pending; ``None`` once it is completed or failed.
    progress: Optional[CommitProgress] = None
    #: When garbage collection purged the commit (its folder and manifest are gone);
    #: ``None`` while it is kept.
    purged_at: Optional[datetime] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Commit":
        return cls(
            id=d["id"],
            mount_id=d.get("mountId"),
            node_id=d.get("nodeId"),
            path=d.get("path", ""),
            message=d.get("message"),
            group_id=d.get("groupId"),
            status=d.get("status", "pending"),
            error=CommitError.from_dict(d.get("error")),
            stats=CommitStats.from_dict(d.get("stats")),
            created_at=_ts(d.get("createdAt")),
            completed_at=_ts(d.get("completedAt")),
            raw=dict(d),
            progress=CommitProgress.from_dict(d.get("progress")),
            purged_at=_ts(d.get("purgedAt")),
        )

    @property
    def is_purged(self) -> bool:
        return self.purged_at is not None

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"

    @property
    def is_completed(self) -> bool:
        return self.status == "completed"

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"


@dataclass
class Ref:
    """A named pointer (e.g. ``latest``) at a completed commit; ``commit`` is embedded."""

    name: str
    mount_id: Optional[str]
    commit_id: str
    commit: Optional[Commit] = None
    updated_at: Optional[datetime] = None
    updated_by: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Ref":
        commit = d.get("commit")
        return cls(
            name=d["name"],
            mount_id=d.get("mountId"),
            commit_id=d.get("commitId") or (commit or {}).get("id", ""),
            commit=Commit.from_dict(commit) if commit else None,
            updated_at=_ts(d.get("updatedAt")),
            updated_by=d.get("updatedBy"),
            raw=dict(d),
        )


@dataclass
class AutoCommitRules:
    """A mount's auto-commit rules (``FOLDERS:MARKER[:REF]`` each), set through the API.

    Every ``roset-mount`` serving the mount applies them beside its own
    ``--auto-commit`` rules. ``version`` is 0 while they were never set and moves on by
    one at every set; ``raw`` keeps each rule's parsed parts (folders, marker, ref).
    """

    mount_id: str
    rules: List[str]
    version: int
    updated_at: Optional[datetime] = None
    updated_by: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "AutoCommitRules":
        return cls(
            mount_id=d["mountId"],
            rules=[r["rule"] for r in d.get("rules", [])],
            version=int(d.get("version", 0)),
            updated_at=_ts(d.get("updatedAt")),
            updated_by=d.get("updatedBy"),
            raw=dict(d),
        )


@dataclass
class RefLogEntry:
    """One move of a ref, oldest first in :meth:`Client.get_ref_log`."""

    name: str
    mount_id: Optional[str]
    from_commit_id: Optional[str]
    to_commit_id: Optional[str]
    updated_at: Optional[datetime] = None
    updated_by: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RefLogEntry":
        return cls(
            name=d.get("name", ""),
            mount_id=d.get("mountId"),
            from_commit_id=d.get("fromCommitId"),
            to_commit_id=d.get("toCommitId"),
            updated_at=_ts(d.get("updatedAt")),
            updated_by=d.get("updatedBy"),
            raw=dict(d),
        )


@dataclass
class CommitGroup:
    """Commits that become visible together. ``status``: pending, committed or failed."""

    id: str
    message: Optional[str] = None
    status: str = "pending"
    commit_ids: List[str] = field(default_factory=list)
    created_at: Optional[datetime] = None
    committed_at: Optional[datetime] = None
    sealed_at: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "CommitGroup":
        return cls(
            id=d["id"],
            message=d.get("message"),
            status=d.get("status", "pending"),
            commit_ids=list(d.get("commitIds") or []),
            created_at=_ts(d.get("createdAt")),
            committed_at=_ts(d.get("committedAt")),
            sealed_at=_ts(d.get("sealedAt")),
            raw=dict(d),
        )


@dataclass
class BlockHashes:
    """The file cut into ``size``-byte blocks (the last one shorter), each hashed
    alone with ``alg`` (``"blake3"``), so a reader verifies any block it fetched."""

    size: int
    alg: str
    hashes: List[str]

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "BlockHashes":
        return cls(size=_int(d.get("size")), alg=d.get("alg", ""), hashes=list(d.get("hashes") or []))


@dataclass
class ManifestFile:
    """One file of a commit. ``path`` is relative to the committed folder.

    ``blocks`` is ``None`` in manifests written before block hashes existed (0.1.0).
    """

    path: str
    size: int
    mode: int
    mtime: Optional[int]
    sha256: str
    key: str
    blocks: Optional[BlockHashes] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ManifestFile":
        blocks = d.get("blocks")
        return cls(
            path=d["path"],
            size=_int(d.get("size")),
            mode=_int(d.get("mode"), 0o644),
            mtime=d.get("mtime"),
            sha256=d.get("sha256", ""),
            key=d.get("key", ""),
            blocks=BlockHashes.from_dict(blocks) if isinstance(blocks, dict) else None,
        )


@dataclass
class Manifest:
    id: str
    mount_id: Optional[str]
    path: str
    message: Optional[str] = None
    group_id: Optional[str] = None
    parent_commit_id: Optional[str] = None
    created_at: Optional[datetime] = None
    files: List[ManifestFile] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Manifest":
        return cls(
            id=d["id"],
            mount_id=d.get("mountId"),
            path=d.get("path", ""),
            message=d.get("message"),
            group_id=d.get("groupId"),
            parent_commit_id=d.get("parentCommitId"),
            created_at=_ts(d.get("createdAt")),
            files=[ManifestFile.from_dict(f) for f in d.get("files") or []],
            raw=dict(d),
        )


T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of a list endpoint; pass ``next_cursor`` back to get the next."""

    items: List[T]
    next_cursor: Optional[str] = None
