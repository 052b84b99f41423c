"""Where the wall time of a research loop on a task goes: the digits example (examples/digits), from outside.

Makes a workspace with `autoresearch init --task` (prepare included, timed apart), runs a short loop with the
built-in search agent (greedy policy, no noise runs: one run per experiment, so every second is attributed), and
splits the loop's wall time into:
- training: what train.py's own clock says for each experiment (`training_seconds:` in each run.log: loading the
  data, training; the predictions after it are in the start-up/other share),
- evaluation: the evaluator's processes, val and holdout, at their cost measured by hand beside the loop
  (median of 3, same machine, same minute),
- start-up: a Python process importing torch and numpy, measured by hand the same way, once per experiment,
- the loop: everything else (the sandbox, git, journal, results.tsv, the search agent, the fixed-file checks).

    python bench/task_overhead.py [--experiments 5] [--burners 0] [--keep]

It prints a markdown table for bench/RESULTS.md with the machine, its load and the date.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import Burners

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits"
EVALUATIONS_PER_EXPERIMENT = 2  # the val evaluation and the holdout


def timed(cmd: list[str], cwd: Path, **env) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env={**os.environ, **env}, timeout=900)
    return time.monotonic() - t0


def median_of(n: int, cmd: list[str], cwd: Path, **env) -> float:
    return statistics.median(timed(cmd, cwd, **env) for _ in range(n))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=5)
    ap.add_argument("--burners", type=int, default=0, help="CPU-bound processes running beside it (a busy machine)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace and print where it is")
    args = ap.parse_args()
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="autoresearch-task-overhead-"))
    load = Burners(args.burners) if args.burners else contextlib.nullcontext()
    try:
        with load:
            load_before = os.getloadavg()
            task = tmp / "digits"
            shutil.copytree(EXAMPLE, task, ignore=shutil.ignore_patterns("data", "output", "__pycache__"))
            ws = tmp / "ws"
            init_s = timed([py, "-m", "autoresearch", "init", str(ws), "--task", str(task)], tmp)
            t0 = time.monotonic()
            subprocess.run([py, "-m", "autoresearch", "run", "--tag", "overhead", "--agent", "search", "--policy",
                            "greedy", "--noise-runs", "0", "--max-experiments", str(args.experiments)],
                           cwd=ws, check=True, timeout=3600)
            wall = time.monotonic() - t0
            logs = sorted(ws.glob(".autoresearch/runs/**/run.log"))
            training = [float(m.group(1)) for log in logs
                        for m in [re.search(r"^training_seconds:\s*([\d.]+)", log.read_text(), re.M)] if m]
            # beside it, by hand: one evaluation and one bare start-up, on a prepared copy with predictions
            scratch = tmp / "scratch"
            shutil.copytree(EXAMPLE, scratch, ignore=shutil.ignore_patterns("data", "output", "__pycache__"))
            subprocess.run([py, "prepare.py"], cwd=scratch, check=True, capture_output=True)
            subprocess.run([py, "train.py"], cwd=scratch, check=True, capture_output=True)
            evaluation = median_of(3, [py, "evaluate.py", "val"], scratch)
            startup = median_of(3, [py, "-c", "import numpy, torch; from autoresearch.harness import budget"],
                                scratch)
            load_after = os.getloadavg()
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    n = args.experiments
    if len(training) != n:
        print(f"found training_seconds in {len(training)} run logs, expected {n}: the shares below are partial",
              file=sys.stderr)
    parts = {
        "training (train.py's clock: data, training)": sum(training),
        f"evaluation ({EVALUATIONS_PER_EXPERIMENT} evaluator processes an experiment, {evaluation:.2f} s each)":
            n * EVALUATIONS_PER_EXPERIMENT * evaluation,
        f"start-up (a process importing torch + numpy, {startup:.2f} s, once an experiment)": n * startup,
    }
    parts["the loop: sandbox, fixed-file checks, git, journal, search agent, predictions"] = wall - sum(parts.values())
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after, {args.burners} burners; digits example, search agent, greedy policy, "
          f"{n} experiments in {wall:.1f} s ({wall / n:.1f} s each); init --task {init_s:.1f} s (prepare included)\n")
    print("| where the wall time went | seconds | share |\n|---|---|---|")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.1f} | {100 * seconds / wall:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
