"""The load signal does not move with the change, and does move with the machine's load.

Runs the template train.py (the tests' tiny settings, a time budget) in variants that change its own speed (DEPTH,
TOTAL_BATCH_SIZE), on the machine as it is, then beside 1 and 2 CPU-bound burner processes (one spinning core
each, each in its own session: with the kernel's autogroup scheduling, processes of one session share one
group's CPU share, so burners started in the benchmark's own session would weigh as one job). Prints, for each run, the candidate signals run/load_meter.py reads: the run's own tokens/s (the old
signal, which the change moves), `wait` (its threads' wait for a core per CPU second: the signal the loop
compares), `others` (cores the rest of the machine used), `psi` (the machine's CPU pressure, share of wall time)
and `share` (the run's own CPU seconds per wall second per core); then each cell's mean and range.

    python bench/load_signal.py [--runs 3] [--budget 4] [--burners 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _load import Burners
from conftest import TINY, TINY_TRAIN

from autoresearch.data.prepare import prepare
from autoresearch.run.supervisor import Experiment, run_experiment
from autoresearch.settings import Settings
from autoresearch.workspace import init_workspace, set_constants

VARIANTS = [("baseline", {}), ("DEPTH 1", {"DEPTH": 1}), ("DEPTH 6", {"DEPTH": 6}),
            ("TOTAL_BATCH_SIZE 2048", {"TOTAL_BATCH_SIZE": 2048, "DEVICE_BATCH_SIZE": 32})]
SIGNALS = ("tps", "wait", "others_cpu", "pressure", "own_share")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per cell")
    ap.add_argument("--budget", type=float, default=4.0)
    ap.add_argument("--burners", default="0,1,2", help="burner counts, comma-separated")
    args = ap.parse_args()
    settings = Settings(**{**TINY, "time_budget": args.budget})
    cells: dict[tuple[int, str], list[dict]] = {}
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, budget {args.budget} s")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        prepare(settings, cache, progress=lambda m: None, workers=1)
        ws = init_workspace(Path(tmp) / "ws", settings)
        base = set_constants((ws / "train.py").read_text(), TINY_TRAIN)
        n = 0
        for burners in [int(b) for b in args.burners.split(",")]:
            with Burners(burners, own_sessions=True) as b:
                for k in range(args.runs):  # interleaved, so a drift of the machine's own load spreads over all
                    for name, changes in VARIANTS:
                        n += 1
                        r = run_experiment(Experiment(source=set_constants(base, changes), workspace=ws,
                                                      settings=settings, run_dir=ws / ".autoresearch" / f"r{n}",
                                                      cache=cache))
                        row = {"tps": r.tokens_per_second, **r.load_signals}
                        cells.setdefault((burners, name), []).append(row)
                        print(f"burners {burners}  {name:<22} {r.status:<6} load1 {os.getloadavg()[0]:4.1f}  "
                              + "  ".join(f"{s} {_f(row.get(s))}" for s in SIGNALS), flush=True)
                if b.alive() != burners:
                    print(f"(only {b.alive()} of {burners} burners were alive at the end)")
    print("\n| burners | variant | " + " | ".join(SIGNALS) + " |")
    print("|---|---|" + "---|" * len(SIGNALS))
    for (burners, name), rows in cells.items():
        cols = []
        for s in SIGNALS:
            xs = [row[s] for row in rows if row.get(s) is not None]
            cols.append("n/a" if not xs else f"{_f(statistics.fmean(xs))} ({_f(min(xs))}-{_f(max(xs))})")
        print(f"| {burners} | {name} | " + " | ".join(cols) + " |")


def _f(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


if __name__ == "__main__":
    main()
