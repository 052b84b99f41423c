"""The load signal does not move with the change, and does move with the machine's load.

Runs the template train.py (the tests' tiny settings, a time budget) in variants that change its own speed (DEPTH,
TOTAL_BATCH_SIZE) on a quiet-as-it-gets machine, then the baseline again beside `--burners` CPU-bound processes.
Prints, for each run, its own tokens/s (the old load signal, which the change moves) and `others_cpu` (the cores
the rest of the machine used while it ran, run/load_meter.py: the signal the loop now compares).

    python bench/load_signal.py [--burners 1] [--budget 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _load import Burners
from conftest import TINY, TINY_TRAIN

from autoresearch.data.prepare import prepare
from autoresearch.run.supervisor import Experiment, run_experiment
from autoresearch.settings import Settings
from autoresearch.workspace import init_workspace, set_constants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--burners", type=int, default=1)
    ap.add_argument("--budget", type=float, default=4.0)
    args = ap.parse_args()
    settings = Settings(**{**TINY, "time_budget": args.budget})
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        prepare(settings, cache, progress=lambda m: None, workers=1)
        ws = init_workspace(Path(tmp) / "ws", settings)
        base = set_constants((ws / "train.py").read_text(), TINY_TRAIN)
        variants = [("baseline", {}), ("DEPTH 1", {"DEPTH": 1}), ("DEPTH 6", {"DEPTH": 6}),
                    ("TOTAL_BATCH_SIZE 2048", {"TOTAL_BATCH_SIZE": 2048, "DEVICE_BATCH_SIZE": 32})]

        def one(name: str, changes: dict, label: str) -> None:
            r = run_experiment(Experiment(source=set_constants(base, changes), workspace=ws, settings=settings,
                                          run_dir=ws / ".autoresearch" / f"{label}-{len(name)}-{id(changes)}",
                                          cache=cache))
            others = "n/a" if r.others_cpu is None else f"{r.others_cpu:.2f}"
            print(f"{label:<8} {name:<24} {r.status:<6} tokens/s {r.tokens_per_second or 0:>9,.0f}   "
                  f"others_cpu {others} cores", flush=True)

        for name, changes in variants:
            one(name, changes, "quiet")
        with Burners(args.burners) as b:
            for name, changes in variants[:2]:
                one(name, changes, f"hog x{args.burners}")
            print(f"(burners alive at the end: {b.alive()} of {args.burners})")


if __name__ == "__main__":
    main()
