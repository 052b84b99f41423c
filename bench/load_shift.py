"""The load changes mid-run: does the default policy keep changes that do nothing?

The baseline (and its seed repeats, the noise floor) runs while `--burners` CPU-bound processes run; then they stop,
and an agent proposes `--changes` changes that do nothing (a comment). Under a time budget the quieter machine gives
each change more steps than the baseline had, so a policy that compares figures across loads keeps them. The loop
notices the speed moved, re-measures the best under the current load (loop/load.py), and keeps none.

    python bench/load_shift.py [--profile cpu] [--budget 20] [--changes 6] [--burners 2] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import Burners

from autoresearch.agents.base import Context, Proposal
from autoresearch.data.prepare import prepare
from autoresearch.loop.core import Limits, Loop, LoopConfig
from autoresearch.settings import PROFILES, Settings, cache_dir
from autoresearch.workspace import init_workspace


class NoOps:
    """Proposes a comment; the load is lifted when the first change is proposed (after the noise floor)."""

    name = "no-op"
    can_fix = False

    def __init__(self, burners: Burners) -> None:
        self.burners, self.n = burners, 0

    def propose(self, ctx: Context) -> Proposal:
        if self.burners.procs:
            self.burners.stop()
            print("load lifted: burners stopped", flush=True)
        self.n += 1
        return Proposal(train_py=ctx.train_py + f"\n# a comment that changes nothing ({self.n})\n",
                        description=f"no-op {self.n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES))
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--changes", type=int, default=6)
    ap.add_argument("--burners", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()

    settings = Settings.from_profile(args.profile, time_budget=args.budget)
    cache = cache_dir(args.cache_dir)
    prepare(settings, cache, progress=lambda m: None)
    burners = Burners(args.burners).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ws = init_workspace(Path(tmp) / "ws", settings)
            loop = Loop(ws, settings, NoOps(burners), LoopConfig(tag="shift", limits=Limits(1 + args.changes),
                                                                  cache=cache))
            loop.start()
            loop.run_until_limit()
            records = loop.journal.final_attempts("shift")
    finally:
        burners.stop()
    print(f"\n{'#':>2} {'status':<8} {'val_bpb':>8} {'steps':>5} {'tok/s':>7}  decision")
    for r in records:
        again = (r.evidence or {}).get("remeasured")
        note = r.evidence.get("why", "")
        if again:
            note += (f"; best re-measured: {again['before']['val_bpb']:.4f} at "
                     f"{again['before']['tokens_per_second']:,.0f} tok/s -> {again['after']['val_bpb']:.4f} at "
                     f"{again['after']['tokens_per_second']:,.0f} tok/s")
        print(f"{r.number:>2} {r.status:<8} {r.val_bpb or 0:8.4f} {r.steps or 0:>5} {r.tokens_per_second or 0:7,.0f}"
              f"  {note}")
    kept = sum(r.status == "keep" for r in records[1:])
    print(f"kept {kept} of {len(records) - 1} changes that do nothing (noise policy, {args.budget:g}s budget)")


if __name__ == "__main__":
    main()
