"""Test-environment shim: make Debian's torch 1.13 importable in full on Python 3.11.

Owned by scripts/python-test, which copies this file and a one-line .pth into the
test virtualenv. It is NOT part of the `roset` package and is never installed by
`pip install roset`.

Why: Debian bookworm ships torch 1.13 built for Python 3.11, but upstream torch
only supported 3.11 from 2.0. Two of its modules break on 3.11:

1. Python 3.11's dataclasses reject an unhashable default, and
   `torch/distributed/_shard/sharded_tensor/metadata.py` declares
   `tensor_properties: TensorProperties = field(default=TensorProperties())`, so
   importing it raises ValueError. Lightning (< 2.3, the last line that supports
   torch 1.13) imports that module in every LightningModule.__init__.
2. Python 3.11 no longer yields a Flag's zero or multi-bit members when iterating
   the class, and `Std.from_str` in `torch/distributed/elastic/multiprocessing/
   api.py` finds a member by iterating `Std`: `from_str("0")` (torchrun's default
   for --redirects and --tee) returns None, and `torchrun` / `python -m
   torch.distributed.run` fails before it starts a worker.

Fix: the exact upstream torch 2.0 changes (`default_factory=TensorProperties`;
`s = Std(int(v))`, `if s in Std`), applied at import time by a meta-path finder
that rewrites those lines of those two modules. Invariant: if a text is not
found verbatim (a different torch), its module loads unchanged.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys

# module → (broken text, fixed text)
_PATCHES = {
    "torch.distributed._shard.sharded_tensor.metadata": (
        "field(default=TensorProperties())",
        "field(default_factory=TensorProperties)",
    ),
    "torch.distributed.elastic.multiprocessing.api": (
        "            v = int(v)\n"
        "            for s in Std:\n"
        "                if s == v:\n"
        "                    return s\n",
        "            s = Std(int(v))\n"
        "            if s in Std:\n"
        "                return s\n",
    ),
}


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    def get_data(self, path):
        data = super().get_data(path)
        if path.endswith(".py"):
            broken, fixed = _PATCHES[self.name]
            data = data.replace(broken.encode(), fixed.encode())
        return data

    # Bytecode caching would store the patched code next to a system file (or be
    # refused); compiling the two modules each time costs little.
    def set_data(self, path, data, *, _mode=0o666):
        return None

    def path_stats(self, path):
        raise OSError("no bytecode cache for patched module")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        loader = _PatchingLoader(fullname, spec.origin)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


if sys.version_info >= (3, 11) and not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
