"""One experiment of the template on the cpu profile, for bench/scorer_cost.py: prints one JSON line.

Runs with whichever autoresearch is first on PYTHONPATH (the old or the new code), in the workspace given.
    python bench/_eval_once.py WORKSPACE CACHE RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autoresearch.run.supervisor import Experiment, run_experiment
from autoresearch.settings import Settings

ws, cache, run_dir = (Path(a) for a in sys.argv[1:4])
settings = Settings.load(ws / "autoresearch.toml")
result = run_experiment(Experiment(source=(ws / "train.py").read_text(), workspace=ws, settings=settings,
                                   run_dir=run_dir, cache=cache))
h = result.harness
print(json.dumps({"status": result.status, "reason": result.reason, "eval_seconds": result.eval_seconds,
                  "val_seconds": h.get("val_seconds"), "test_seconds": h.get("test_seconds"),
                  "val_calls": h.get("val_calls"), "val_bpb": result.val_bpb, "wall": result.wall_seconds}))
