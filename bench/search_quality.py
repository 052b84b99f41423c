"""How good the built-in `search` agent is: Optuna's TPE against random search over the same space, and against the
search it replaced, at an equal number of experiments and the same budget.

Each method runs `autoresearch run` on a fresh workspace of the real template (the `cpu` profile, a token budget,
the greedy policy: one run per experiment), for N experiments after the baseline, once per seed. The old search
runs from the source of the revision before it was replaced (default 7a07393, unpacked with `git archive` into
the temporary directory), for this measurement only. Printed per run and as the mean per method: the held-out
test_bpb of the run's best (the keep decided last; the test split is scored only where val gained), its
val_bpb, keeps and crashes. Methods take turns within each seed, so a change in the machine's load touches them
alike (under a token budget the load changes the time, not the figures).

    python bench/search_quality.py [--experiments 8] [--seeds 2] [--token-budget 163840] [--methods tpe,random,old]
                                   [--old REV] [--profile cpu] [--cache-dir DIR] [--keep]

The demo's budget is 163,840 tokens (40 steps): about a minute an experiment on 2 quiet cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAG = "bench"
CLI = "import sys; from autoresearch.cli import main; sys.exit(main())"
METHODS = {  # name -> (code, extra `run` options)
    "tpe": ("new", ["--sampler", "tpe"]),
    "cmaes": ("new", ["--sampler", "cmaes"]),
    "random": ("new", ["--sampler", "random"]),
    "old": ("old", []),
}


def python(src: Path, code: str, *args: str, cwd: Path | None = None, env: dict | None = None,
           quiet: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, check=False, text=True,
                          env={**os.environ, "PYTHONPATH": str(src), **(env or {})},
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None)


def make_workspace(src: Path, ws: Path, cache: Path, profile: str, budget: float, tokens: int) -> None:
    code = (f"from pathlib import Path\n"
            f"from autoresearch.settings import Settings\n"
            f"from autoresearch.workspace import init_workspace\n"
            f"from autoresearch.data.prepare import prepare\n"
            f"s = Settings.from_profile({profile!r}, time_budget={budget}, token_budget={tokens})\n"
            f"init_workspace(Path({str(ws)!r}), s)\n"
            f"prepare(s, Path({str(cache)!r}), progress=lambda m: None)\n")
    r = python(src, code)
    if r.returncode:
        raise SystemExit(f"could not create {ws}: {r.stdout[-2000:]}")


def outcome(ws: Path) -> dict:
    """The run's best (the keep decided last) and its counts, read from the journal."""
    sys.path.insert(0, str(REPO / "src"))
    from autoresearch.loop.journal import Journal

    j = Journal(ws / ".autoresearch" / "journal.db")
    try:
        rows = j.final_attempts(TAG)
    finally:
        j.close()
    keeps = [r for r in rows if r.status == "keep"]
    best = keeps[-1] if keeps else None
    return {"experiments": len(rows) - 1, "keeps": len(keeps) - 1, "crashes": sum(r.status == "crash" for r in rows),
            "baseline_test": rows[0].test_bpb if rows else None, "val": best.val_bpb if best else None,
            "test": best.test_bpb if best else None, "best": best.description if best else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=8, help="experiments per run after the baseline")
    ap.add_argument("--seeds", type=int, default=2, help="runs per method (agent seeds 0..n-1)")
    ap.add_argument("--token-budget", type=int, default=163840, help="training tokens per experiment")
    ap.add_argument("--budget", type=float, default=45.0, help="time budget in seconds (a cap under a token budget)")
    ap.add_argument("--methods", default="tpe,random,old", help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--old", default="7a07393", help="the revision with the search this replaced")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--cache-dir", type=Path, help="prepared data (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (workspaces, journals)")
    args = ap.parse_args()
    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")

    root = Path(tempfile.mkdtemp(prefix="search-quality-"))
    cache = (args.cache_dir or root / "cache").resolve()
    codes = {"new": REPO / "src"}
    if any(METHODS[m][0] == "old" for m in methods):
        old_tree = root / "old-tree"
        old_tree.mkdir()
        tar = subprocess.run(["git", "-C", str(REPO), "archive", args.old, "src"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=tar.stdout, check=True)
        codes["old"] = old_tree / "src"
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"{args.profile} profile, {args.token_budget:,} tokens an experiment, {args.experiments} experiments "
          f"after the baseline, greedy policy, seeds 0..{args.seeds - 1}; old search: {args.old}", flush=True)
    print(f"{'method':>7} {'seed':>4} {'test_bpb':>9} {'val_bpb':>9} {'keeps':>5} {'crash':>5} {'min':>5}  best",
          flush=True)
    results: dict[str, list[dict]] = {m: [] for m in methods}
    try:
        for seed in range(args.seeds):
            for m in methods:
                code, extra = METHODS[m]
                ws = root / f"{m}-{seed}"
                make_workspace(codes[code], ws, cache, args.profile, args.budget, args.token_budget)
                t0 = time.monotonic()
                r = python(codes[code], CLI, "run", "--tag", TAG, "--agent", "search", "--seed", str(seed),
                           "--policy", "greedy", "--max-experiments", str(args.experiments + 1), *extra,
                           cwd=ws, env={"AUTORESEARCH_CACHE": str(cache)})
                out = outcome(ws)
                out["minutes"] = (time.monotonic() - t0) / 60
                if r.returncode or out["experiments"] < args.experiments:
                    print(f"  ({m} seed {seed}: exit {r.returncode}, {out['experiments']} experiments) "
                          f"{r.stdout[-1500:]}", flush=True)
                results[m].append(out)
                test = f"{out['test']:.4f}" if out["test"] is not None else "-"
                val = f"{out['val']:.4f}" if out["val"] is not None else "-"
                print(f"{m:>7} {seed:>4} {test:>9} {val:>9} {out['keeps']:>5} {out['crashes']:>5} "
                      f"{out['minutes']:>5.1f}  {out['best'][:70]}  load {os.getloadavg()[0]:.1f}", flush=True)
        base = [o["baseline_test"] for rs in results.values() for o in rs if o["baseline_test"] is not None]
        if base:
            print(f"baseline test_bpb: mean {statistics.fmean(base):.4f} over {len(base)} runs")
        print(f"{'method':>7} {'mean test_bpb':>13} {'mean val_bpb':>12} {'keeps':>6}  runs")
        for m, rs in results.items():
            tests = [o["test"] for o in rs if o["test"] is not None]
            vals = [o["val"] for o in rs if o["val"] is not None]
            print(f"{m:>7} {statistics.fmean(tests) if tests else float('nan'):>13.4f} "
                  f"{statistics.fmean(vals) if vals else float('nan'):>12.4f} "
                  f"{statistics.fmean(o['keeps'] for o in rs):>6.1f}  {len(rs)}")
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
