"""Roset Python SDK: atomic ML checkpoints on object storage.

Owns: the public top-level names. ``roset.Client`` and the models are the surface of
the original SDK README (design §6); integrations live in ``roset.integrations.*``
and import their framework only when imported themselves, so ``import roset``
needs nothing beyond the standard library.
"""
from ._version import __version__
from .client import Client
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
    BlockHashes,
    Commit,
    CommitError,
    CommitGroup,
    CommitProgress,
    CommitStats,
    Manifest,
    ManifestFile,
    Mount,
    Node,
    Page,
    Ref,
    RefLogEntry,
)

__all__ = [
    "__version__",
    "Client",
    "Node",
    "Commit",
    "CommitError",
    "CommitStats",
    "CommitProgress",
    "Ref",
    "RefLogEntry",
    "AutoCommitRules",
    "CommitGroup",
    "Manifest",
    "BlockHashes",
    "ManifestFile",
    "Mount",
    "Page",
    "RosetError",
    "RosetAPIError",
    "RosetNotFoundError",
    "RosetConflictError",
    "RosetAuthenticationError",
    "RosetCommitFailedError",
    "RosetConnectionError",
    "RosetTimeoutError",
]
