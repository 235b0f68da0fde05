"""Hugging Face Transformers integration: ``RosetTrainerCallback``.

Owns: committing each ``checkpoint-N`` folder that ``transformers.Trainer`` writes
under ``args.output_dir`` (which must be inside a Roset mount), and moving a ref
to it once the commit is completed.

When: ``on_save``, which the Trainer calls on every process after that process
has written and closed its files of the checkpoint. In a distributed job
(``torch.distributed`` initialised) every process first waits at a barrier
(``wait_for_all_ranks``), so the checkpoint is committed only once every rank has
finished writing its files (FSDP and DeepSpeed shards, ``rng_state_<rank>.pth``,
anything a callback listed before this one wrote); then only the world process
zero commits, and the others return. Without ``torch.distributed`` there is no
barrier.

Async mode (``async_commit=True``): commits run on one background thread, in the
order the checkpoints were saved, so training does not wait for uploads.

Invariants:
- The ref moves only to a completed commit and never backwards (commits are
  processed first-in first-out, and a step older than the published one is never
  published).
- An async failure is never dropped: it is logged at once, then raised from the
  next ``on_save`` or, at the latest, from ``on_train_end`` (after all queued
  commits have finished), so ``trainer.train()`` fails. ``wait()`` does the same on
  demand.
- ``save_total_limit`` works: the Trainer's rotation is
  ``shutil.rmtree(checkpoint, ignore_errors=True)`` of the oldest ``checkpoint-N``.
  On a committed folder each unlink inside it fails with EROFS (ignored), and the
  final rmdir of the folder itself soft-deletes it as a whole: it leaves the
  namespace, its commit stays in history. A folder that a ref points at, or one
  still sealing, is refused (EBUSY / EROFS, ignored too) and stays whole; the next
  rotation tries again (docs/SEMANTICS.md, "Removing committed folders").
"""
import logging
import os
import queue
import re
import threading
from typing import Any, List, Optional, Tuple

from ..client import Client
from ..exceptions import RosetError
from ..models import Commit
from ._common import RefMover, commit_folder, find_mount_root, to_mount_path, wait_for_all_ranks

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - exercised only without transformers
    raise ImportError(
        "roset.integrations.huggingface needs transformers: pip install 'roset[huggingface]'"
    ) from e

log = logging.getLogger("roset.integrations.huggingface")

__all__ = ["RosetTrainerCallback"]

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_STOP = object()


def newest_checkpoint(output_dir: str) -> Optional[Tuple[int, str]]:
    """The ``checkpoint-N`` folder with the largest N under ``output_dir``, as (N, path)."""
    best: Optional[Tuple[int, str]] = None
    try:
        names = os.listdir(output_dir)
    except FileNotFoundError:
        return None
    for name in names:
        m = _CHECKPOINT_RE.match(name)
        if m and os.path.isdir(os.path.join(output_dir, name)):
            n = int(m.group(1))
            if best is None or n > best[0]:
                best = (n, os.path.join(output_dir, name))
    return best


class RosetTrainerCallback(TrainerCallback):
    """Commit every Trainer checkpoint and move a ref to it.

    In distributed training, list it after any callback that writes files into
    the checkpoint folder in its own ``on_save``: callbacks run in list order, and
    this one's barrier is what tells world zero that every rank is done.

    Args:
        client: a :class:`roset.Client`.
        update_ref: ref moved to each completed checkpoint (``None``: no ref).
        async_commit: commit in the background instead of blocking ``on_save``
            (the barrier itself stays in ``on_save``).
        mount_path: the Roset mountpoint; found from the API/disk when omitted.
        commit_timeout: seconds to wait for each commit to complete.
    """

    def __init__(
        self,
        client: Client,
        update_ref: Optional[str] = "latest",
        async_commit: bool = False,
        mount_path: Optional[str] = None,
        commit_timeout: Optional[float] = 600,
    ) -> None:
        self.client = client
        self.update_ref = update_ref
        self.async_commit = async_commit
        self.mount_path = mount_path
        self.commit_timeout = commit_timeout
        #: Completed commits, in checkpoint order.
        self.commits: List[Commit] = []
        self._ref = RefMover(client, update_ref)
        self._errors: List[BaseException] = []
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._worker: Optional[threading.Thread] = None
        self._last_step: Optional[int] = None

    # -- the commit itself -------------------------------------------------------

    def _commit(self, step: int, local_dir: str) -> Commit:
        root = self.mount_path or find_mount_root(local_dir, self.client)
        self.mount_path = root
        mount_rel = to_mount_path(local_dir, root)
        commit = commit_folder(
            self.client,
            mount_rel,
            message=f"transformers {os.path.basename(local_dir)} (global step {step})",
            timeout=self.commit_timeout,
        )
        with self._lock:
            self.commits.append(commit)
        self._ref.move(commit, step)
        log.info("roset: committed %s as %s", local_dir, commit.id)
        return commit

    def _run_worker(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                step, local_dir = job
                try:
                    self._commit(step, local_dir)
                except BaseException as e:  # noqa: BLE001 - every failure must surface
                    log.error("roset: async commit of %s failed: %s", local_dir, e)
                    with self._lock:
                        self._errors.append(e)
            finally:
                self._queue.task_done()

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            # Daemon: a crashed training process must not hang on exit; wait() is
            # what guarantees completion on the normal path.
            self._worker = threading.Thread(target=self._run_worker, name="roset-commit", daemon=True)
            self._worker.start()

    def _raise_pending_error(self) -> None:
        with self._lock:
            if not self._errors:
                return
            first, rest = self._errors[0], len(self._errors) - 1
            self._errors.clear()
        if rest:
            log.error("roset: %d more async commit(s) failed as well", rest)
        raise first

    def wait(self) -> None:
        """Block until every queued commit is done; raise the first async failure."""
        if self._worker is not None:
            self._queue.join()
        self._raise_pending_error()

    # -- TrainerCallback ---------------------------------------------------------

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Every process, before the world-zero check: the Trainer calls on_save on
        # all of them, so all of them reach this barrier once per save, and world
        # zero commits only after the slowest rank has closed its files.
        wait_for_all_ranks()
        if not state.is_world_process_zero:
            return
        # Fail fast: an earlier async commit failed, so stop training now.
        self._raise_pending_error()
        step = int(state.global_step)
        exact = os.path.join(args.output_dir, f"checkpoint-{step}")
        if os.path.isdir(exact):
            found: Optional[Tuple[int, str]] = (step, exact)
        else:
            found = newest_checkpoint(args.output_dir)
        if found is None:
            raise RosetError(f"on_save at step {step}: no checkpoint-N folder under {args.output_dir}")
        n, local_dir = found
        if self._last_step is not None and n <= self._last_step:
            log.debug("roset: %s already handled", local_dir)
            return
        self._last_step = n
        if self.async_commit:
            self._ensure_worker()
            self._queue.put((n, local_dir))
        else:
            self._commit(n, local_dir)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self.wait()
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(timeout=5)
            self._worker = None
