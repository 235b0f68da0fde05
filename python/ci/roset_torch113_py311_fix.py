"""Test-environment shim: make Debian's torch 1.13 importable in full on Python 3.11.

Owned by scripts/python-test, which copies this file and a one-line .pth into the
test virtualenv. It is NOT part of the `roset` package and is never installed by
`pip install roset`.

Why: Debian bookworm ships torch 1.13 built for Python 3.11, but upstream torch
only supported 3.11 from 2.0. Python 3.11's dataclasses reject an unhashable
default, and `torch/distributed/_shard/sharded_tensor/metadata.py` declares
`tensor_properties: TensorProperties = field(default=TensorProperties())`, so
importing it raises ValueError. Lightning (< 2.3, the last line that supports
torch 1.13) imports that module in every LightningModule.__init__.

Fix: the exact upstream torch 2.0 change (`default_factory=TensorProperties`),
applied at import time by a meta-path finder that rewrites that one line of
that one module. Invariant: if the line is not found verbatim (a different
torch), the module loads unchanged.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys

_TARGET = "torch.distributed._shard.sharded_tensor.metadata"
_BROKEN = "field(default=TensorProperties())"
_FIXED = "field(default_factory=TensorProperties)"


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    def get_data(self, path):
        data = super().get_data(path)
        if path.endswith(".py"):
            data = data.replace(_BROKEN.encode(), _FIXED.encode())
        return data

    # Bytecode caching would store the patched code next to a system file (or be
    # refused); compiling one small module each time costs nothing.
    def set_data(self, path, data, *, _mode=0o666):
        return None

    def path_stats(self, path):
        raise OSError("no bytecode cache for patched module")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        loader = _PatchingLoader(fullname, spec.origin)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


if sys.version_info >= (3, 11) and not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
