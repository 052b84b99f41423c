"""How often the noise policy keeps a change that does nothing: the real Decider, on simulated and on real runs.

A null change is the best's own code with another seed: every keep of one is a false keep. Each trial measures a
fresh floor (the baseline and its `--noise-runs` repeats), runs the null change once and, where the policy says
marginal, its confirm runs, exactly as the loop does (loop/decider.py with the NoisePolicy). The figures come from
  - simulation: normal noise; and, for the floor pooled over a night's repeats, extra groups of repeats;
  - real runs: `--real N` runs of the template train.py (tiny settings, a token budget, seeds 0..N-1) by the real
    runner; trials then draw their figures from those runs' val_bpb (with replacement).
Prints the false-keep rate per null change with a 95% interval. The README's promise: at most the level `sigmas`
names (2 sd: 2.3%).

    python bench/false_keeps.py [--trials 20000] [--real 10]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from autoresearch.loop import load
from autoresearch.loop.decider import Decider, with_seed
from autoresearch.loop.policy import NoisePolicy, pooled_sd
from autoresearch.run.result import RunResult


class Floor:
    """The ledger as the Decider sees it: the best (the baseline) and the pooled floor of every group of repeats."""

    def __init__(self, best_runs: list[float], more_groups: list[list[float]]) -> None:
        self.best_runs, self.groups = best_runs, [best_runs, *more_groups]
        self.rec = SimpleNamespace(commit_sha="b", parent_commit="b", evidence={"runs": best_runs})

    def best(self):
        return self.rec

    def reference(self, best):
        return load.Reference("b", statistics.fmean(self.best_runs), len(self.best_runs), None)

    def noise(self):
        return pooled_sd(self.groups)

    def info(self):
        return {}


def rate(policy: NoisePolicy, draw, trials: int, pooled_groups: int = 0, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    kept = 0
    for _ in range(trials):
        floor = Floor([draw(rng) for _ in range(1 + policy.noise_runs)],
                      [[draw(rng), draw(rng)] for _ in range(pooled_groups)])
        decider = Decider(policy, SimpleNamespace(token_budget=1), floor, lambda text: None)
        rec = SimpleNamespace(train_py="SEED = 1\n", number=2)
        again = lambda source, run_dir, runs: RunResult(status="ok", val_bpb=draw(rng))  # noqa: E731
        kept += decider.decide(rec, RunResult(status="ok", val_bpb=draw(rng)), Path("/nonexistent"), again).status \
            == "keep"
    p = kept / trials
    return p, 1.96 * math.sqrt(max(p * (1 - p), 1 / trials) / trials)


def real_figures(n: int) -> list[float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import TINY, TINY_TRAIN

    from autoresearch.data.prepare import prepare
    from autoresearch.run.supervisor import Experiment, run_experiment
    from autoresearch.settings import Settings
    from autoresearch.workspace import init_workspace, set_constants

    settings = Settings(**TINY).replace(token_budget=4096)
    vals = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        prepare(settings, cache, progress=lambda m: None, workers=1)
        ws = init_workspace(Path(tmp) / "ws", settings)
        source = set_constants((ws / "train.py").read_text(), TINY_TRAIN)
        for k in range(n):
            r = run_experiment(Experiment(source=with_seed(source, k), workspace=ws, settings=settings,
                                          run_dir=ws / ".autoresearch" / f"run-{k}", cache=cache))
            print(f"  real run, seed {k}: {r.status} val_bpb {r.val_bpb} ({r.wall_seconds:.0f}s)", flush=True)
            if r.ok:
                vals.append(r.val_bpb)
    return vals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--real", type=int, default=10, help="real runs of the template to draw from (0: none)")
    ap.add_argument("--sigmas", type=float, default=2.0)
    args = ap.parse_args()
    default = NoisePolicy(sigmas=args.sigmas, noise_runs=2, confirm_runs=1)
    print(f"level the policy names: {default.level:.2%} per null change ({args.sigmas:g} sd)")
    normal = lambda rng: rng.gauss(1.0, 0.01)  # noqa: E731
    cases = [("default (3-run floor, 1 confirm run)", default, 0),
             ("no confirm run", NoisePolicy(args.sigmas, 2, 0), 0),
             ("5-run floor, 2 confirm runs", NoisePolicy(args.sigmas, 4, 2), 0),
             ("default, floor pooled with 10 more pairs of repeats", default, 10)]
    for name, policy, groups in cases:
        p, half = rate(policy, normal, args.trials, groups)
        print(f"simulated, normal noise, {name}: {p:.2%} ± {half:.2%}  ({args.trials} null changes)")
    if args.real:
        vals = real_figures(args.real)
        if len(vals) < 3:
            sys.exit("fewer than 3 real runs scored: nothing to draw from")
        print(f"real runs: {len(vals)} scored, val_bpb mean {statistics.fmean(vals):.4f} sd {statistics.stdev(vals):.4f}")
        p, half = rate(default, lambda rng: rng.choice(vals), args.trials)
        print(f"real runs, default policy: {p:.2%} ± {half:.2%}  ({args.trials} null changes drawn from them)")


if __name__ == "__main__":
    main()
