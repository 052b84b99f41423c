"""Experiments per hour with 1, 2 and 4 workers, on the local backend and on Ray, side by side in one session.

Each experiment's wall time is dominated by its fixed budget (the stand-in train.py waits out `--budget` seconds
as a real one trains for its budget, then the real scorer evaluates it), so on a 2-core machine the cores are not
what limits the workers: the loop's own overhead, the start-up of each run and the scheduling are. For each
backend and worker count it runs a fresh research run (greedy policy, a scripted agent whose changes all run)
for `--rounds` experiments per worker after the baseline, and prints the rate of finished experiments after the
baseline, and the speed-up over one worker measured in the same session.

    python bench/scaling.py [--budget 30] [--rounds 2] [--workers 1 2 4] [--backends local ray]

Ray: a local instance is started here (`ray.init`, declaring the CPUs the largest worker count's tasks ask for,
so placement, not this machine's two cores, decides); pass --address to use a running cluster instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from loopkit import fast_source  # noqa: E402  (the ~2 s stand-in the loop tests use)

from autoresearch import vcs  # noqa: E402
from autoresearch.agents.base import Proposal  # noqa: E402
from autoresearch.data.prepare import prepare  # noqa: E402
from autoresearch.loop.core import Limits, Loop, LoopConfig  # noqa: E402
from autoresearch.settings import Settings  # noqa: E402
from autoresearch.workspace import init_workspace, set_constants  # noqa: E402

TINY = dict(profile="cpu", dataset="embedded", max_seq_len=64, eval_tokens=2048, vocab_size=512,
            embedded_train_mb=0.4)


class Steps:
    """Proposes QUALITY 0.31, 0.32, ...: every proposal is new, valid and runs the full budget."""

    name = "steps"
    can_fix = False

    def __init__(self, budget: float, offset: int) -> None:
        self.budget, self.k = budget, offset * 1000

    def propose(self, ctx) -> Proposal:
        self.k += 1
        return Proposal(train_py=set_constants(fast_source(), {"QUALITY": 0.3 + self.k * 1e-5, "SLEEP": self.budget}),
                        description=f"step {self.k}")


def one(backend: str, workers: int, budget: float, rounds: int, root: Path, cache: Path, address: str | None) -> dict:
    settings = Settings(**TINY, time_budget=budget + 30)
    ws = init_workspace(root / f"{backend}-{workers}", settings)
    (ws / "train.py").write_text(set_constants(fast_source(), {"SLEEP": budget}))
    vcs.commit_all(ws, "the stand-in, waiting out the budget")
    total = 1 + rounds * workers
    loop = Loop(ws, settings, [Steps(budget, k) for k in range(workers)],
                LoopConfig(tag="bench", policy="greedy", fix_attempts=0, cache=cache, workers=workers,
                           backend=backend, address=address, limits=Limits(max_experiments=total)))
    loop.start()
    t0 = time.monotonic()
    reason = loop.run_until_limit()
    wall = time.monotonic() - t0
    recs = loop.journal.final_attempts("bench")
    base_done = next(r.finished_at for r in recs if r.number == 1)
    after = [r for r in recs if r.number > 1]
    span = max(r.finished_at for r in after) - base_done if after else 0.0
    ok = sum(r.outcome == "ok" for r in after)
    nodes = sorted({r.node for r in after if r.node})
    loop.journal.close()
    return {"backend": backend, "workers": workers, "experiments": len(after), "ok": ok, "span": span,
            "per_hour": len(after) / span * 3600 if span > 0 else 0.0, "wall": wall, "reason": reason,
            "nodes": nodes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=30.0, help="seconds each experiment waits out (its budget)")
    ap.add_argument("--rounds", type=int, default=2, help="experiments per worker after the baseline")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--address", help="a running Ray cluster (default: a local instance started here)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="autoresearch-scaling-"))
    cache = root / "cache"
    prepare(Settings(**TINY), cache, progress=lambda m: None)
    os.environ["AUTORESEARCH_CACHE"] = str(cache)
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"budget {args.budget:g}s, {args.rounds} experiments per worker after the baseline")
    results = []
    for backend in args.backends:
        if backend == "ray" and not args.address:  # started now, not before the local runs: they need no Ray
            import ray

            from autoresearch.backends.ray import CPUS_PER_TASK

            # CPUs as Ray counts them: enough for the largest worker count's tasks at once (they mostly wait out
            # the budget, so this machine's cores are not what the figure measures).
            ray.init(address="local", num_cpus=max(args.workers) * CPUS_PER_TASK, include_dashboard=False,
                     log_to_driver=False)
        for w in args.workers:
            r = one(backend, w, args.budget, args.rounds, root, cache, args.address)
            results.append(r)
            print(f"{backend:<6} {w} workers: {r['experiments']} experiments ({r['ok']} ok) in {r['span']:.0f}s "
                  f"after the baseline -> {r['per_hour']:.0f}/h | load {os.getloadavg()[0]:.1f}"
                  + (f" | nodes {', '.join(r['nodes'])}" if r["nodes"] else ""), flush=True)
    print(f"\n{'backend':<8} {'workers':>7} {'exp/h':>8} {'vs 1':>6}")
    for r in results:
        one_worker = next((x for x in results if x["backend"] == r["backend"] and x["workers"] == 1), None)
        ratio = r["per_hour"] / one_worker["per_hour"] if one_worker and one_worker["per_hour"] else float("nan")
        print(f"{r['backend']:<8} {r['workers']:>7} {r['per_hour']:>8.0f} {ratio:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
