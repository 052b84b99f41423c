"""A tiny task for the tests: numpy only, seconds on a CPU. Points in 2-D, labelled by a line; train.py fits a
least-squares classifier and writes its predictions; evaluate.py scores them against the hidden labels."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

PREPARE = '''\
import numpy as np
from pathlib import Path
rng = np.random.default_rng(0)
x = rng.normal(size=(400, 2))
y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
Path("data").mkdir(exist_ok=True)
for name, part in (("train", slice(0, 200)), ("val", slice(200, 300)), ("test", slice(300, 400))):
    np.save(f"data/{name}_x.npy", x[part])
    np.save(f"data/{name}_y.npy", y[part])
'''

TRAIN = '''\
import os
import numpy as np

BIAS = 0.0  # added to the decision value: 0 is best
SCALE = 1.0  # the learned weights times this

x = np.load("data/train_x.npy")
y = np.load("data/train_y.npy")
w, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], 2.0 * y - 1.0, rcond=None)
for split in ("val", "test"):
    xs = np.load(f"data/{split}_x.npy")
    pred = ((np.c_[xs, np.ones(len(xs))] @ w) * SCALE + BIAS > 0).astype(np.int64)
    np.save(os.path.join(os.environ["AUTORESEARCH_OUTPUT"], f"{split}_pred.npy"), pred)
print("accuracy: 1.0  (what the script says decides nothing)")
'''

EVALUATE = '''\
import json, math, os, sys
import numpy as np
split = sys.argv[1]
pred = np.load(os.path.join(os.environ["AUTORESEARCH_OUTPUT"], f"{split}_pred.npy"), allow_pickle=False)
y = np.load(f"data/{split}_y.npy", allow_pickle=False)
print(json.dumps({"accuracy": float((pred == y).mean()), "n": int(len(y))}))
'''

TOML = '''\
[task]
name = "line"
editable = ["train.py"]
command = "python train.py"
metric = "accuracy"
goal = "maximize"
timeout = 120
prepare = "python prepare.py"
readable = ["data/train_*.npy", "data/val_x.npy", "data/test_x.npy"]
hidden = ["data/val_y.npy", "data/test_y.npy"]
evaluate = "python evaluate.py val"
holdout = "python evaluate.py test"
'''


def make_task(root: Path, toml: str = TOML, **files: str) -> Path:
    """A task directory at `root`: prepare.py, train.py, evaluate.py, program.md, task.toml (+ `files`, by name
    with `__` for `/` and `_py` for `.py`, e.g. evaluate_py=...)."""
    root.mkdir(parents=True, exist_ok=True)
    texts = {"prepare.py": PREPARE, "train.py": TRAIN, "evaluate.py": EVALUATE, "task.toml": toml,
             "program.md": "Improve the classifier's accuracy.\n"}
    for key, text in files.items():
        texts[key.replace("__", "/").removesuffix("_py") + (".py" if key.endswith("_py") else "")] = text
    for name, text in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def scripted_agent(tmp: Path, steps: list[tuple[str, dict[str, str]]]) -> str:
    """A command agent that, for experiment k + 2, writes the k-th step's files into its checkout (train.py through
    AUTORESEARCH_TRAIN_PY, any other file by its path; past the plan, the last step) and keeps the prompt it was
    given in prompts/<experiment>.txt (run it with --no-agent-sandbox: it writes outside the workspace)."""
    plan = tmp / "plan.json"
    plan.write_text(json.dumps(steps))
    agent = tmp / "agent.py"
    agent.write_text(f"""\
import json, os, pathlib, sys
plan = json.loads(pathlib.Path({str(plan)!r}).read_text())
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
k = n - 2
prompts = pathlib.Path({str(tmp / 'prompts')!r}); prompts.mkdir(exist_ok=True)
(prompts / f"{{n}}.txt").write_text(pathlib.Path(os.environ["AUTORESEARCH_PROMPT_FILE"]).read_text())
description, files = plan[min(k, len(plan) - 1)]
train = pathlib.Path(os.environ["AUTORESEARCH_TRAIN_PY"])
for name, text in files.items():
    (train if name == "train.py" else train.parent / name).write_text(text)
print("Description: " + description)
""")
    return f"cmd:{sys.executable} {agent}"
