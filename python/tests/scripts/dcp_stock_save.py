"""A stock PyTorch Distributed Checkpoint save, with no Roset import: what a user's
training script does. It saves a model's state dict into DIR with DCP's FileSystemWriter
(single process, ``no_dist=True``), or loads one back and prints a digest.

Usage: dcp_stock_save.py save DIR SEED | load DIR
With ROSET_TEST_PAUSE_BEFORE_METADATA=1 the save stops after DCP wrote the tensor data
and before it writes ``.metadata`` (printing ``data written``), so a test can SIGKILL it
mid-save; the pause is the test's, the save itself is DCP's own code.
"""
import hashlib
import os
import sys
import time

import torch

try:  # torch 2.x
    import torch.distributed.checkpoint as dcp
except ImportError:  # torch 1.13
    import torch.distributed._shard.checkpoint as dcp


def state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8))
    return model.state_dict()


def digest(sd) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "save":
        sd = state(int(sys.argv[3]))
        writer = dcp.FileSystemWriter(path)
        if os.environ.get("ROSET_TEST_PAUSE_BEFORE_METADATA") == "1":
            def finish(*_args, **_kwargs):
                print("data written", flush=True)
                time.sleep(3600)
            writer.finish = finish
        dcp.save_state_dict(sd, writer, no_dist=True)
        print(digest(sd), flush=True)
    else:
        sd = state(0)
        for v in sd.values():
            v.zero_()
        dcp.load_state_dict(sd, dcp.FileSystemReader(path), no_dist=True)
        print(digest(sd), flush=True)


if __name__ == "__main__":
    main()
