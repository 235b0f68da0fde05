"""Ray Train integration: ``RosetRayTrainCallback``.

Owns: committing a checkpoint directory written by a Ray Train worker into a
Roset mount, and moving a ref to it, from inside the training function.

Usage: build the callback on the driver, capture it in ``train_func`` (it pickles:
it holds only the client's settings), and after writing a checkpoint call
``callback.process_checkpoint(checkpoint_dir, step=...)`` on every worker. Ranks
may all write files into the one folder (each through the mount on its own node).
When ``torch.distributed`` is initialised (``TorchTrainer`` does it), every worker
first waits at a barrier (``wait_for_all_ranks``), so world rank zero commits only
after every rank has closed its files; the others then return ``None``. The call
is a collective there: a worker that skips it leaves the others waiting. Without
``torch.distributed`` there is no barrier, and only rank zero's files are known
to be complete.

Invariants:
- ``process_checkpoint`` returns only after the commit is ``completed`` and the ref
  moved; a failed commit raises (so the Ray Train run fails, never silently).
- The ref never moves backwards: an older ``step`` than the last one published by
  this callback is committed but not published.
"""
import logging
import os
from typing import Optional

from ..client import Client
from ..models import Commit
from ._common import RefMover, commit_folder, find_mount_root, global_rank, to_mount_path, wait_for_all_ranks

log = logging.getLogger("roset.integrations.ray")

__all__ = ["RosetRayTrainCallback"]


def _world_rank() -> int:
    """The Ray Train world rank inside a training function; the launcher's rank otherwise."""
    try:
        import ray.train

        return int(ray.train.get_context().get_world_rank())
    except Exception:  # noqa: BLE001 - not inside a Ray Train session (or no Ray at all)
        return global_rank()


class RosetRayTrainCallback:
    """Commit Ray Train checkpoints and move a ref.

    Args:
        client: a :class:`roset.Client`.
        update_ref: ref moved to each completed checkpoint (``None``: no ref).
        mount_path: the Roset mountpoint; found from the API/disk when omitted.
        commit_timeout: seconds to wait for each commit to complete.
    """

    def __init__(
        self,
        client: Client,
        update_ref: Optional[str] = "latest",
        mount_path: Optional[str] = None,
        commit_timeout: Optional[float] = 600,
    ) -> None:
        self.client = client
        self.update_ref = update_ref
        self.mount_path = mount_path
        self.commit_timeout = commit_timeout
        self._ref: Optional[RefMover] = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_ref"] = None  # holds a lock; rebuilt in the worker
        return state

    def process_checkpoint(self, checkpoint_dir: str, step: Optional[int] = None, message: Optional[str] = None) -> Optional[Commit]:
        """Commit ``checkpoint_dir`` (on world rank zero) and move the ref.

        Call it on every worker, after that worker has closed the files it wrote:
        in a ``torch.distributed`` job all workers wait for each other here first.
        Returns the completed commit on rank zero, ``None`` on other ranks.
        """
        wait_for_all_ranks()
        if _world_rank() != 0:
            return None
        local = os.path.abspath(os.fspath(checkpoint_dir))
        root = self.mount_path or find_mount_root(local, self.client)
        self.mount_path = root
        mount_rel = to_mount_path(local, root)
        commit = commit_folder(
            self.client,
            mount_rel,
            message=message or f"ray train checkpoint {os.path.basename(local)}" + (f" (step {step})" if step is not None else ""),
            timeout=self.commit_timeout,
        )
        if self._ref is None:
            self._ref = RefMover(self.client, self.update_ref)
        self._ref.move(commit, step)
        log.info("roset: committed %s as %s", local, commit.id)
        return commit
