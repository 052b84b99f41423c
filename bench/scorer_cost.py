"""What scoring in a process of its own costs: evaluation time before and after, side by side, on one machine.

Makes a detached git worktree of the old code (default fe79a57, the last with the evaluation inside train.py's
process) and alternates experiments of the template, old code then new, each in a fresh process, in workspaces
made once per code (`init` on the given profile with a token budget, then `prepare`). Prints, per run, the
runner's evaluation time (from the start of the evaluation to the exit of train.py's process) and the harness's
own device time per split, then the medians and their ratio. Run it on a busy machine too: the ratio of medians
measured in the same session is the figure to quote.

    python bench/scorer_cost.py [--old REV] [--runs 4] [--profile cpu] [--token-budget 163840] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup(src: Path, root: Path, profile: str, token_budget: int) -> tuple[Path, Path]:
    """A workspace and a cache prepared by the code under `src`."""
    ws, cache = root / "ws", root / "cache"
    code = (f"from pathlib import Path\n"
            f"from autoresearch.settings import Settings\n"
            f"from autoresearch.workspace import init_workspace\n"
            f"from autoresearch.data.prepare import prepare\n"
            f"s = Settings.from_profile({profile!r}, token_budget={token_budget})\n"
            f"init_workspace(Path({str(ws)!r}), s)\n"
            f"prepare(s, Path({str(cache)!r}), progress=lambda m: None)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(src)},
                   stdout=subprocess.DEVNULL)
    return ws, cache


def once(src: Path, ws: Path, cache: Path, run_dir: Path) -> dict:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "_eval_once.py"), str(ws), str(cache), str(run_dir)],
                         env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True, timeout=3600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"no result from {src}: {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="fe79a57", help="the revision with the evaluation in train.py's process")
    ap.add_argument("--runs", type=int, default=4, help="experiments per code")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--token-budget", type=int, default=163840, help="training tokens (163,840: the demo's)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="scorer-cost-"))
    old_tree = root / "old-tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old_tree), args.old], check=True)
    try:
        codes = {"old": old_tree / "src", "new": REPO / "src"}
        places = {name: setup(src, root / name, args.profile, args.token_budget) for name, src in codes.items()}
        rows: dict[str, list[dict]] = {name: [] for name in codes}
        print(f"{time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
              f"{args.profile} profile, token budget {args.token_budget:,}")
        print(f"{'run':>4} {'code':>4} {'status':>8} {'eval s':>8} {'val s':>7} {'test s':>7} {'calls':>5} "
              f"{'val_bpb':>8}")
        for k in range(args.runs):
            for name, src in codes.items():
                ws, cache = places[name]
                r = once(src, ws, cache, root / name / f"run-{k}")
                rows[name].append(r)
                print(f"{k + 1:>4} {name:>4} {r['status']:>8} {r['eval_seconds'] or float('nan'):>8.2f} "
                      f"{r['val_seconds'] or float('nan'):>7.2f} {r['test_seconds'] or float('nan'):>7.2f} "
                      f"{r['val_calls'] or 0:>5} {r['val_bpb'] or float('nan'):>8.4f}  load {os.getloadavg()[0]:.1f}")
        med = {name: statistics.median(r["eval_seconds"] for r in rs if r["eval_seconds"]) for name, rs in rows.items()}
        print(f"median evaluation: old {med['old']:.2f} s, new {med['new']:.2f} s, "
              f"new/old {med['new'] / med['old']:.2f}")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], check=False)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
