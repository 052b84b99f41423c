"""Where the wall time of a research loop goes: training, and everything else.

Runs a short loop with the built-in search agent on a fresh workspace (embedded corpus), then splits each
experiment's wall time using the journal: training (train.py's timed steps), evaluation (the harness), start-up
and warm-up (the rest of the experiment's process), agent, and the loop's own checks, git and bookkeeping.
The original autoresearch spends about 8.6% outside training (325.9 s for 300 s); we aim for under 4% excluding
the agent's thinking time, at the cuda profile's 300 s budget (shorter budgets make the fixed costs weigh more).

    python bench/loop_overhead.py [--profile cpu] [--budget 60] [--token-budget N] [--experiments 3] [--cache-dir DIR]

The demo's settings: --budget 45 --token-budget 163840.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import Burners

from autoresearch.agents.search import SearchAgent
from autoresearch.data.prepare import prepare
from autoresearch.loop.core import Limits, Loop, LoopConfig
from autoresearch.settings import PROFILES, Settings, cache_dir
from autoresearch.workspace import init_workspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES))
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds per experiment")
    ap.add_argument("--token-budget", type=int, default=0, help="training tokens per experiment (0: time budget)")
    ap.add_argument("--experiments", type=int, default=3)
    ap.add_argument("--burners", type=int, default=0, help="CPU-bound processes running beside it (a busy machine)")
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()

    settings = Settings.from_profile(args.profile, time_budget=args.budget, token_budget=args.token_budget)
    cache = cache_dir(args.cache_dir)
    prepare(settings, cache, progress=lambda m: print(m, flush=True))
    load = Burners(args.burners) if args.burners else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, load:
        ws = init_workspace(Path(tmp) / "ws", settings)
        # greedy: one run per experiment, so every second of wall time is attributed (the noise policy's extra
        # seed runs count in each record's run_seconds, but training_seconds and eval_seconds are the decided run's)
        loop = Loop(ws, settings, SearchAgent(), LoopConfig(tag="bench", policy="greedy",
                                                             limits=Limits(args.experiments), cache=cache))
        t0 = time.monotonic()
        loop.start()
        loop.run_until_limit()
        wall = time.monotonic() - t0
        records = [r for r in loop.journal.experiments("bench", done_only=True) if r.run_seconds]

    train = sum(r.training_seconds or 0 for r in records)
    evaluation = sum(r.eval_seconds or 0 for r in records)
    run = sum(r.run_seconds for r in records)
    agent = sum(r.agent_seconds or 0 for r in records)
    loop_own = wall - run - agent
    startup = run - train - evaluation
    budget = f"{args.token_budget:,} tokens" if args.token_budget else f"{args.budget:g}s"
    print(f"\n{len(records)} experiments, profile {args.profile}, {budget} budget, {args.burners} burner(s), "
          f"{wall:.1f}s wall")
    for name, secs in [("training", train), ("evaluation (harness)", evaluation),
                       ("start-up + warm-up steps", startup), ("agent (search)", agent),
                       ("loop: checks, git, journal", loop_own)]:
        print(f"  {name:<28} {secs:8.1f}s  {100 * secs / wall:5.1f}%")
    outside = wall - agent - train
    print(f"share of wall time not spent training, agent excluded: {100 * outside / (wall - agent):.1f}%")
    print(f"per experiment: {outside / len(records):.1f}s outside training "
          f"(evaluation {evaluation / len(records):.1f}s, start-up {startup / len(records):.1f}s, "
          f"loop {loop_own / len(records):.2f}s)")


if __name__ == "__main__":
    main()
