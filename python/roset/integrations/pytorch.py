"""PyTorch Lightning integration: ``RosetCheckpointIO``.

Owns: saving Lightning checkpoints through a Roset mount as committed folders, and
resolving a ref name (``ckpt_path="latest"``) back to a checkpoint file on load.

How a save works (``save_checkpoint(checkpoint, path)``):
  1. Lightning's ``path`` (e.g. ``.../epoch=0-step=2.ckpt``) picks the folder name
     (``epoch=0-step=2``); the folder is created fresh under
     ``{mount_path}{checkpoint_dir}``. If a folder of that name already exists
     (committed by an earlier save, or left half-written by a crash), a suffix
     ``-1``, ``-2``... is added: committed folders are immutable, and a stale
     staging folder must never be committed with someone else's partial files.
  2. The checkpoint is written with ``torch.save``, flushed, fsynced and closed.
  3. The folder is committed, the commit is waited for,
     and only once it is ``completed`` does ``update_ref`` move.

How a load works (``load_checkpoint(path)``): an existing file path loads as is.
Otherwise ``path`` is taken as a ref name (Lightning passes any string it does not
recognise, such as ``"latest"``, straight to ``CheckpointIO.load_checkpoint``): the
ref's commit names the committed folder, its manifest names the ``.ckpt`` file, and
that file is read through the mount.

First run: when the ref does not exist yet, ``load_checkpoint`` returns an empty
checkpoint that is *falsy*; every restore step of Lightning's checkpoint connector
begins with ``if not self._loaded_checkpoint: return``, so training starts from
scratch with a warning, as Lightning does for ``ckpt_path="last"`` with no last
checkpoint. So one script with ``ckpt_path="latest"`` serves the first run and
every resume.

Invariants:
- Only global rank zero writes and commits; other ranks do nothing. There is no
  rank barrier in ``save_checkpoint`` (unlike the Hugging Face and Ray
  integrations): Lightning calls it on global rank zero only, and every file of the
  folder is rank zero's own (see the comment in ``save_checkpoint``).
- The ref only ever points at a completed commit; a failed commit raises out of
  ``save_checkpoint`` (so the training run stops) and leaves the ref untouched.
- ``remove_checkpoint`` (what ``ModelCheckpoint(save_top_k=...)`` calls for a
  checkpoint that leaves the top k) soft-deletes the checkpoint's committed folder
  through the API: it leaves the namespace as a whole, its commit stays in history.
  A folder that a ref points at is refused by the server in the delete's own
  transaction and stays (logged), so a ref never points at a deleted folder.
- The class derives from the ``CheckpointIO`` of every Lightning flavour that is
  installed (``lightning.pytorch`` and/or ``pytorch_lightning``), so either
  ``Trainer`` accepts it as a plugin.
"""
import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ..client import Client
from ..exceptions import RosetAPIError, RosetError
from ..models import Commit
from ._common import RefMover, commit_folder

log = logging.getLogger("roset.integrations.pytorch")

__all__ = ["RosetCheckpointIO"]


def _checkpoint_io_bases() -> Tuple[type, ...]:
    bases: List[type] = []
    try:
        from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO as _A

        bases.append(_A)
    except ImportError:
        pass
    try:
        from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO as _B

        if _B not in bases:
            bases.append(_B)
    except ImportError:
        pass
    if not bases:
        raise ImportError(
            "roset.integrations.pytorch needs PyTorch Lightning: pip install 'roset[pytorch]'"
            " (either the `lightning` or the `pytorch-lightning` package)"
        )
    return tuple(bases)


def _rank_zero() -> bool:
    """Global rank zero, as Lightning itself decides it."""
    for mod in ("lightning.fabric.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        try:
            module = __import__(mod, fromlist=["rank_zero_only"])
            rank = getattr(module.rank_zero_only, "rank", None)
            if rank is not None:
                return int(rank) == 0
        except ImportError:
            continue
    from ._common import global_rank

    return global_rank() == 0


class _NothingToRestore(dict):
    """The checkpoint of a ref that does not exist yet: falsy, so nothing is restored."""

    def __bool__(self) -> bool:
        return False


def _nothing_to_restore() -> Dict[str, Any]:
    # Lightning reads (and may rewrite) the version key before it checks emptiness.
    # The newest installed flavour's version means: no migration to apply.
    versions = []
    for mod in ("lightning", "pytorch_lightning"):
        try:
            versions.append(__import__(mod).__version__)
        except (ImportError, AttributeError):
            continue
    try:
        from packaging.version import Version

        newest = max(versions, key=Version) if versions else "0.0.0"
    except ImportError:  # pragma: no cover - packaging is a Lightning dependency
        newest = versions[0] if versions else "0.0.0"
    return _NothingToRestore({"pytorch-lightning_version": newest})


_REF_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,@-]")


class _RosetCheckpointIOImpl:
    """The behaviour; combined with Lightning's ``CheckpointIO`` base(s) below."""

    def __init__(
        self,
        client: Client,
        mount_path: str,
        checkpoint_dir: str = "/checkpoints",
        update_ref: Optional[str] = "latest",
        commit_timeout: Optional[float] = 600,
    ) -> None:
        """
        Args:
            client: a :class:`roset.Client` for the API of this mount.
            mount_path: where the Roset mount is, e.g. ``/mnt/roset``.
            checkpoint_dir: mount-relative folder that holds one folder per checkpoint.
            update_ref: ref moved to each completed checkpoint (``None``: no ref).
            commit_timeout: seconds to wait for each commit to complete.
        """
        super().__init__()
        self.client = client
        self.mount_path = os.path.abspath(os.fspath(mount_path))
        # Mount-relative, no trailing "/" ("" for the mount root).
        parts = [p for p in str(checkpoint_dir).split("/") if p]
        self.checkpoint_dir = "/" + "/".join(parts) if parts else ""
        self.update_ref = update_ref
        self.commit_timeout = commit_timeout
        #: Every commit this instance made, oldest first.
        self.commits: List[Commit] = []
        # Lightning path → mount-relative folder it was saved into (for remove/load).
        self._saved: Dict[str, str] = {}
        self._ref = RefMover(client, update_ref)

    # -- mapping --------------------------------------------------------------

    def _local(self, mount_rel: str) -> str:
        return self.mount_path + mount_rel

    def _folder_names(self, path: str) -> Tuple[str, str]:
        """(first-choice mount-relative folder, file name) for a Lightning path."""
        base = os.path.basename(os.fspath(path))
        stem = base[: -len(".ckpt")] if base.endswith(".ckpt") else base
        stem = _UNSAFE.sub("_", stem) or "checkpoint"
        filename = _UNSAFE.sub("_", base) or "checkpoint.ckpt"
        return f"{self.checkpoint_dir}/{stem}", filename

    def _fresh_folder(self, path: str) -> Tuple[str, str]:
        first, filename = self._folder_names(path)
        stem = first.rsplit("/", 1)[1]
        candidate, n = stem, 0
        while os.path.lexists(self._local(f"{self.checkpoint_dir}/{candidate}")):
            n += 1
            candidate = f"{stem}-{n}"
        return f"{self.checkpoint_dir}/{candidate}", filename

    # -- CheckpointIO ------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        import torch

        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        # Ranks. A commit must wait until every rank that writes into the folder
        # has closed its files, and a barrier is the way to wait; but here a
        # barrier would be both unneeded and a deadlock:
        # - Lightning calls CheckpointIO.save_checkpoint on global rank zero only.
        #   Strategy.save_checkpoint is `if self.is_global_zero:
        #   self.checkpoint_io.save_checkpoint(...)`, and the single-writer
        #   strategies (single device, DDP, FSDP with a full state dict, XLA) go
        #   through it. A dist.barrier() here would wait for ranks that never
        #   arrive. The other ranks are held by Lightning itself at
        #   strategy.barrier("Trainer.save_checkpoint"), after this call.
        # - Strategies that shard (FSDP with state_dict_type="sharded", DeepSpeed)
        #   write every rank's shard themselves and never call CheckpointIO, so
        #   this plugin never sees (or commits) their checkpoints.
        # - The folder is named here, on rank zero, at save time (fresh, see
        #   _fresh_folder), and only rank zero writes into it: once its file is
        #   closed, every file of the folder is, and committing at once is safe.
        # A strategy that does call save_checkpoint on every rank reaches the early
        # return below on the other ranks; they write nothing, so rank zero still
        # has nothing to wait for, and no rank blocks.
        if not _rank_zero():
            return
        folder, filename = self._fresh_folder(path)
        local_dir = self._local(folder)
        os.makedirs(local_dir, exist_ok=False)
        local_file = os.path.join(local_dir, filename)
        with open(local_file, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        self._saved[os.fspath(path)] = folder
        step = checkpoint.get("global_step") if isinstance(checkpoint, dict) else None
        commit = commit_folder(
            self.client,
            folder,
            message=f"lightning checkpoint {filename}" + (f" (global step {step})" if step is not None else ""),
            timeout=self.commit_timeout,
        )
        self.commits.append(commit)
        self._ref.move(commit, step if isinstance(step, int) else None)
        log.info("roset: committed %s as %s", local_file, commit.id)

    def resolve_checkpoint_path(self, path: Any) -> Optional[str]:
        """Map what Lightning passes as ``ckpt_path`` to a local file to read.

        Returns ``None`` when ``path`` is a ref name and that ref does not exist yet.
        """
        text = os.fspath(path)
        if os.path.isfile(text):
            return text
        if text in self._saved:
            folder = self._saved[text]
            return os.path.join(self._local(folder), os.path.basename(text))
        if not _REF_NAME.match(text) or text.endswith(".ckpt"):
            raise FileNotFoundError(f"checkpoint file {text!r} does not exist")
        ref = self.client.get_ref(text)
        if ref is None:
            return None
        manifest = self.client.get_manifest(ref.commit_id)
        files = [f.path for f in manifest.files]
        ckpts = [p for p in files if p.endswith(".ckpt")]
        if len(ckpts) != 1 and len(files) != 1:
            raise RosetError(
                f"ref {text!r} points at {manifest.path} (commit {ref.commit_id}), which does not hold exactly"
                f" one checkpoint file: {files}"
            )
        chosen = ckpts[0] if len(ckpts) == 1 else files[0]
        return self._local(manifest.path.rstrip("/") + "/" + chosen)

    def load_checkpoint(self, path: Any, map_location: Optional[Any] = None, **kwargs: Any) -> Dict[str, Any]:
        import torch

        local = self.resolve_checkpoint_path(path)
        if local is None:
            log.warning(
                "roset: ref %r does not exist yet (first run?): nothing to resume, training starts from scratch",
                os.fspath(path),
            )
            return _nothing_to_restore()
        log.info("roset: loading %s (from %r)", local, os.fspath(path))
        load_kwargs: Dict[str, Any] = {"map_location": map_location or (lambda storage, loc: storage)}
        weights_only = kwargs.get("weights_only")
        if weights_only is not None:
            load_kwargs["weights_only"] = weights_only
        with open(local, "rb") as f:
            try:
                return torch.load(f, **load_kwargs)
            except TypeError:
                # torch < 1.13 has no weights_only.
                load_kwargs.pop("weights_only", None)
                f.seek(0)
                return torch.load(f, **load_kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        if not _rank_zero():
            return
        text = os.fspath(path)
        folder = self._saved.pop(text, None)
        if folder is None:
            # Saved by an earlier process (Lightning restores best/last paths on
            # resume): the first folder a save of this path would have used.
            folder, _ = self._folder_names(text)
        node = self.client.resolve_path(folder)
        if node is None:
            return
        # One soft delete: the folder leaves the namespace as a whole and its commit
        # stays in history. The server refuses (REFERENCED_BY_REF) in the same
        # transaction while any ref points at it; that checkpoint then stays.
        try:
            self.client.delete_node(node.id)
        except RosetAPIError as e:
            if e.code != "REFERENCED_BY_REF":
                raise
            log.warning("roset: not removing %s: %s", folder, e.message)
            return
        log.info("roset: soft-deleted %s", folder)

    def teardown(self) -> None:
        pass


_BASES = _checkpoint_io_bases()


class RosetCheckpointIO(_RosetCheckpointIOImpl, *_BASES):  # type: ignore[misc]
    """A Lightning ``CheckpointIO`` that commits every checkpoint and moves a ref.

    Example::

        trainer = Trainer(plugins=[RosetCheckpointIO(
            client=client, mount_path="/mnt/roset",
            checkpoint_dir="/checkpoints", update_ref="latest")])
        trainer.fit(model, ckpt_path="latest")   # resumes from the ref
    """
