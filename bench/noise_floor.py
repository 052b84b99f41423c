"""The noise floor under load: a time budget against a token budget, on the same busy machine, side by side.

Runs the workspace's unchanged train.py `--runs` times with different seeds under a time budget, then as many times
under a token budget equal to the median number of tokens the time-budget runs trained on, all while `--burners`
CPU-bound processes run (the other jobs of a shared machine). Under a time budget the load decides how many steps
a run gets, so it adds to the seed noise; under a token budget only the seed is left. Prints both floors.

    python bench/noise_floor.py [--profile cpu] [--budget 45] [--runs 3] [--burners 2] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import Burners

from autoresearch.data.prepare import prepare
from autoresearch.loop.decider import with_seed as _with_seed
from autoresearch.run.supervisor import Experiment, RunResult, run_experiment
from autoresearch.settings import PROFILES, Settings, cache_dir
from autoresearch.workspace import init_workspace


def runs(ws: Path, settings: Settings, cache: Path, n: int, label: str) -> list[RunResult]:
    source = (ws / "train.py").read_text()
    out = []
    for k in range(n):
        r = run_experiment(Experiment(source=_with_seed(source, k), workspace=ws, settings=settings,
                                      run_dir=ws / ".autoresearch" / f"{label}-{k}", cache=cache,
                                      compile_cache=ws / ".autoresearch" / "compile-cache"))
        print(f"  {label} seed {k}: {r.status} val_bpb {r.val_bpb} steps {r.steps} "
              f"tokens {r.train_tokens} at {r.tokens_per_second or 0:,.0f} tok/s, wall {r.wall_seconds:.0f}s"
              + ("" if r.ok else f" ({r.reason})"), flush=True)
        out.append(r)
    return out


def floor(results: list[RunResult]) -> str:
    vals = [r.val_bpb for r in results if r.ok]
    if len(vals) < 2:
        return f"{len(vals)} scored run(s): no floor"
    steps = [r.steps for r in results if r.ok]
    return (f"mean {statistics.fmean(vals):.4f}  sd {statistics.stdev(vals):.4f}  "
            f"(runs {', '.join(f'{v:.4f}' for v in vals)}; steps {steps})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES))
    ap.add_argument("--budget", type=float, default=45.0, help="training seconds of the time-budget runs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--burners", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()

    settings = Settings.from_profile(args.profile, time_budget=args.budget)
    cache = cache_dir(args.cache_dir)
    prepare(settings, cache, progress=lambda m: None)
    with tempfile.TemporaryDirectory() as tmp, Burners(args.burners) as burners:
        ws = init_workspace(Path(tmp) / "ws", settings)
        print(f"{args.burners} CPU-bound burners running; profile {args.profile}", flush=True)
        timed = runs(ws, settings, cache, args.runs, "time")
        tokens = sorted(r.train_tokens for r in timed if r.ok and r.train_tokens)
        if not tokens:
            sys.exit("no time-budget run was scored: nothing to size the token budget on")
        token_settings = settings.replace(token_budget=tokens[len(tokens) // 2])
        counted = runs(ws, token_settings, cache, args.runs, "tokens")
        alive = burners.alive()
    if alive != args.burners:
        print(f"WARNING: only {alive} of {args.burners} burners were still running at the end: not measured under load")
    print(f"\nnoise floor under {args.burners} burners ({args.profile} profile):")
    print(f"  time budget {args.budget:g}s:           {floor(timed)}")
    print(f"  token budget {token_settings.token_budget:,}:  {floor(counted)}")


if __name__ == "__main__":
    main()
