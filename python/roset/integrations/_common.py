"""Shared plumbing of the framework integrations.

Owns: turning a local checkpoint directory under a Roset mount into a
mount-relative API path, the rank barrier, and the one commit sequence every
integration uses:

    every rank: files closed → wait_for_all_ranks()
    world rank zero: resolve folder → commit → wait until completed → move the ref

Invariants:
- The ref moves only after the commit is ``completed``; a failed or timed-out
  commit raises and leaves the ref where it was.
- A ref is never moved backwards by the same :class:`RefMover`: a step older than
  the last one it published is committed but not published.
- Files must be closed before ``commit_folder`` is called: the daemon snapshots
  only closed files, and waits at most its seal timeout for open ones.
- In a distributed job every rank may write files of one checkpoint folder, each
  through the mount on its own node (FSDP, DeepSpeed and PyTorch DCP shards). World
  rank zero commits only after ``wait_for_all_ranks()``, which every rank calls at
  the same point once its files are closed; a commit made earlier would miss the
  files of a slower rank, or cut them off (from the seal on, the folder refuses new
  writes with ``EROFS``).
"""
import logging
import os
import sys
import threading
from typing import Optional

from ..client import Client
from ..exceptions import RosetError
from ..models import Commit

log = logging.getLogger("roset.integrations")

__all__ = ["find_mount_root", "to_mount_path", "commit_folder", "RefMover", "global_rank", "wait_for_all_ranks"]


def find_mount_root(local_path: str, client: Optional[Client] = None) -> str:
    """Return the Roset mountpoint that contains ``local_path``.

    Prefers the mountpoints the API reports for its mount (exact, and works for
    bind mounts); falls back to the nearest ancestor that is a mountpoint.

    A control plane with agents on several nodes reports every node's mountpoint,
    and those are paths on other machines: only one that is a mountpoint here
    counts. (Otherwise a node mounting at ``/mnt/roset/ckpt`` elsewhere would turn
    ``/mnt/roset/ckpt/step-1`` under this node's ``/mnt/roset`` into ``/step-1``
    instead of ``/ckpt/step-1``.)
    """
    real = os.path.realpath(local_path)
    if client is not None:
        try:
            candidates = []
            for m in client.list_mounts():
                if client.mount_id and m.id != client.mount_id:
                    continue
                candidates.extend(os.path.realpath(mp) for mp in m.mountpoints if os.path.ismount(mp))
            best = None
            for mp in candidates:
                if real == mp or real.startswith(mp.rstrip("/") + "/"):
                    if best is None or len(mp) > len(best):
                        best = mp
            if best:
                return best
        except RosetError as e:  # the API may be older or restricted; fall through
            log.debug("roset: cannot list mounts (%s); looking for the mountpoint on disk", e)
    probe = real
    while True:
        if os.path.ismount(probe):
            if probe == "/":
                break
            return probe
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    raise RosetError(f"{local_path} is not under a Roset mount")


def to_mount_path(local_path: str, mount_root: str) -> str:
    """``/mnt/roset/checkpoints/step-1`` under ``/mnt/roset`` → ``/checkpoints/step-1``."""
    real = os.path.realpath(local_path)
    root = os.path.realpath(mount_root)
    rel = os.path.relpath(real, root)
    if rel == "." :
        return "/"
    if rel.startswith(".."):
        raise RosetError(f"{local_path} is not under the Roset mount {mount_root}")
    return "/" + rel.replace(os.sep, "/")


def global_rank() -> int:
    """The process's global rank from the usual launcher variables (0 when single)."""
    for var in ("RANK", "GLOBAL_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        value = os.environ.get(var)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def wait_for_all_ranks() -> bool:
    """Block until every rank of the default ``torch.distributed`` group gets here.

    Call it on every rank, at the same point of every save, after the rank has
    closed the files it wrote into the checkpoint folder, and before world rank
    zero commits that folder. It is a collective: a rank that skips it leaves the
    others waiting until the process group's timeout.

    Returns ``True`` when it waited; ``False``, doing nothing, when the process is
    not part of an initialised ``torch.distributed`` job (a single process, or one
    whose launcher does not use ``torch.distributed``). torch is never imported
    here: when the process has not imported ``torch.distributed``, no process group
    can have been initialised.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return False
    log.debug("roset: waiting for every rank to finish writing the checkpoint")
    dist.barrier()
    return True


def commit_folder(
    client: Client,
    mount_path: str,
    message: Optional[str] = None,
    timeout: Optional[float] = 600,
) -> Commit:
    """Commit the folder at a mount-relative path and wait until it is completed."""
    node = client.resolve_path(mount_path)
    if node is None:
        raise RosetError(f"{mount_path} does not exist in the Roset namespace")
    if node.is_committed and node.commit_id:
        # Already committed (e.g. a retry after a lost response): reuse it.
        return client.wait_for_commit(node.commit_id, timeout=timeout)
    commit = client.commit(node.id, message=message)
    return client.wait_for_commit(commit.id, timeout=timeout)


class RefMover:
    """Moves one ref forward only, in the order checkpoints were taken."""

    def __init__(self, client: Client, name: Optional[str]):
        self.client = client
        self.name = name
        self._lock = threading.Lock()
        self._last_step: Optional[int] = None

    def move(self, commit: Commit, step: Optional[int] = None) -> bool:
        if not self.name:
            return False
        with self._lock:
            if step is not None and self._last_step is not None and step < self._last_step:
                log.warning(
                    "roset: not moving ref %r back to step %s (already at step %s)", self.name, step, self._last_step
                )
                return False
            self.client.update_ref(self.name, commit.id)
            if step is not None:
                self._last_step = step
            log.info("roset: ref %r -> %s (%s)", self.name, commit.id, commit.path)
            return True
