"""Run one Python snippet of python/README.md, as written, in this fresh process.

Usage: readme_snippet.py NAME --mount MNT --out OUT [--phase N]

The snippet is the ```python block after ``<!-- snippet: NAME -->`` in the
README. Only what a reader must fill in is substituted: the API URL and key
(taken from ROSET_API_URL / ROSET_API_KEY), the mountpoint ``/mnt/roset``, and
for the framework snippets the run length and the objects the snippet assumes
exist (``model``, ``train_dataset``, ``save_checkpoint``). Every substitution must
match the README text exactly, so a README edit that breaks a snippet breaks the
test. Results go to OUT as JSON for tests/test_readme.py to check.
"""
import argparse
import json
import os
import re
import sys
import tempfile

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("--mount", required=True)
p.add_argument("--out", required=True)
p.add_argument("--phase", type=int, default=1)
p.add_argument("--root", default=None, help="Lightning default_root_dir, the same across phases")
args = p.parse_args()


def snippet(name):
    text = open(README, encoding="utf-8").read()
    m = re.search(r"<!-- snippet: %s -->\s*```python\n(.*?)```" % re.escape(name), text, re.S)
    if not m:
        sys.exit(f"no snippet {name!r} in {README}")
    return m.group(1)


def substitute(code, pairs):
    for old, new in pairs:
        if old not in code:
            sys.exit(f"README snippet {args.name!r} no longer contains {old!r}")
        code = code.replace(old, new)
    return code


code = snippet(args.name)
common = [
    ('"/mnt/roset', '"' + args.mount),
]
if args.name == "quickstart":
    common += [('api_url="http://127.0.0.1:7070"', 'api_url=os.environ["ROSET_API_URL"]'),
               ('api_key="rsk_..."', 'api_key=os.environ["ROSET_API_KEY"]')]
else:
    common += [('api_url="..."', 'api_url=os.environ["ROSET_API_URL"]'),
               ('api_key="..."', 'api_key=os.environ["ROSET_API_KEY"]')]

ns = {"__name__": "__main__", "os": os}
result = {}

if args.name == "quickstart":
    code = substitute(code, common)
    exec(compile(code, "README:quickstart", "exec"), ns)
    result["commit"] = ns["commit"].id

elif args.name == "lightning":
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            return DataLoader(TensorDataset(torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)), batch_size=4)

    class Report(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            result["start_step"] = trainer.global_step

    torch.manual_seed(0)
    ns["model"] = Model()
    ns["TEST_TRAINER_ARGS"] = dict(
        max_epochs=args.phase, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=args.root or tempfile.mkdtemp(), callbacks=[Report()],
    )
    code = substitute(code, common + [("trainer = Trainer(\n    plugins=", "trainer = Trainer(\n    **TEST_TRAINER_ARGS,\n    plugins=")])
    exec(compile(code, "README:lightning", "exec"), ns)
    result["end_step"] = ns["trainer"].global_step

elif args.name == "huggingface":
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)

    class Tokens(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            ids = torch.randint(0, 64, (8,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": ids}

    ns["model"] = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=16))
    ns["train_dataset"] = Tokens()
    code = substitute(code, common + [
        ("model=model,", "model=model, train_dataset=train_dataset,"),
        ("save_steps=500,", 'save_steps=2, max_steps=4, per_device_train_batch_size=4, use_cpu=True, report_to=[],'
                            ' disable_tqdm=True, logging_strategy="no",'),
    ])
    exec(compile(code, "README:huggingface", "exec"), ns)
    result["end_step"] = ns["trainer"].state.global_step

elif args.name == "ray":
    import ray
    import ray.train
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def save_checkpoint(checkpoint_dir):
        # The user's own save function; rank zero writes, as usual.
        if ray.train.get_context().get_world_rank() == 0:
            os.makedirs(checkpoint_dir, exist_ok=True)
            with open(os.path.join(checkpoint_dir, "model.pt"), "wb") as f:
                torch.save({"step": 1000, "w": torch.ones(4)}, f)

    ns["save_checkpoint"] = save_checkpoint
    code = substitute(code, common)
    exec(compile(code, "README:ray", "exec"), ns)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        TorchTrainer(
            ns["train_func"],
            scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
            run_config=RunConfig(storage_path=tempfile.mkdtemp(prefix="ray-results-"), name="readme"),
        ).fit()
    finally:
        ray.shutdown()

else:
    sys.exit(f"unknown snippet {args.name!r}")

with open(args.out, "w") as f:
    json.dump(result, f)
