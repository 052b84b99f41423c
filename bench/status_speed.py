"""How long `autoresearch status` takes on a journal of many experiments, and what it imports.

Builds a workspace whose journal holds one run of N experiments (default 200: a night on a GPU) with realistic
payloads (a complete train.py, a diff, a log tail each), then runs `autoresearch status` in fresh processes, as a
user does, and prints the wall time of each and whether torch was imported. `import torch` alone is timed
beside it for scale. The goal: under 1 s for 200 experiments.

    python bench/status_speed.py [--experiments 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from autoresearch.loop.journal import Journal
from autoresearch.see.facts import journal_path
from autoresearch.settings import SETTINGS_FILE, Settings

TEMPLATE = (Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "template" / "train.py").read_text()
# Runs `status` as the console script does, then reports whether torch came along (on stderr, after the table).
PROBE = ("import sys\nfrom autoresearch.cli import cli\n"
         "try:\n    cli(['status'], prog_name='autoresearch')\nexcept SystemExit as e:\n    code = e.code\n"
         "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")


def build(ws: Path, n: int) -> None:
    settings = Settings.from_profile("cpu")
    ws.mkdir(parents=True)
    (ws / SETTINGS_FILE).write_text(settings.to_toml())
    rng = random.Random(0)
    j = Journal(journal_path(ws))
    j.create_run("bench", "autoresearch/bench", "b" * 40, "anthropic:claude-sonnet-4-5", "noise", asdict(settings))
    best = 1.6
    for number in range(1, n + 1):
        val = best + rng.gauss(0.01, 0.03)
        status = "keep" if val < best else rng.choice(["discard", "discard", "discard", "crash"])
        if status == "keep":
            best = val
        rec = j.add_experiment("bench", number, 0, f"change {number}: MATRIX_LR {rng.random():.3f}", TEMPLATE,
                               "a" * 40, agent="anthropic:claude-sonnet-4-5")
        j.update(rec.id, state="done", status=status, outcome="crash" if status == "crash" else "ok",
                 val_bpb=None if status == "crash" else val, test_bpb=None if status == "crash" else val + 0.01,
                 memory_gb=0.8, commit_sha=f"{number:08x}" + "0" * 32, finished_at=time.time(),
                 run_seconds=330.0, agent_seconds=40.0, training_seconds=300.0, steps=900,
                 diff="--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-A = 1\n+A = 2\n" * 20,
                 rationale="because " * 200, error_tail="Traceback ...\n" * 30 if status == "crash" else "",
                 input_tokens=20000, output_tokens=3000, cost_usd=0.1)
    j.update_run("bench", state="stopped", stop_reason=f"reached --max-experiments {n}")
    j.close()


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{argv} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return elapsed, out.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        build(ws, args.experiments)
        size = journal_path(ws).stat().st_size
        os.environ.pop("AUTORESEARCH_WORKSPACE", None)
        status = [timed([sys.executable, "-c", PROBE], ws) for _ in range(args.repeats)]
        torch = [timed([sys.executable, "-c", "import torch"], ws)[0] for _ in range(min(3, args.repeats))]
    times = [t for t, _ in status]
    print(f"journal: {args.experiments} experiments, {size / 1e6:.1f} MB; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"autoresearch status: median {statistics.median(times):.3f} s, min {min(times):.3f} s, "
          f"max {max(times):.3f} s over {len(times)} runs; {status[-1][1].strip()}")
    print(f"python -c 'import torch' alone: median {statistics.median(torch):.3f} s")


if __name__ == "__main__":
    main()
