"""How much of one experiment the evaluation takes: training vs evaluation, by the runner's clock.

Does what `autoresearch init` + `prepare` + `train` do (the demo's settings by default: `cpu` profile, 45 s budget,
embedded corpus) in a temporary workspace, once per evaluation size given, and prints where the time went. The
runner's clock splits the run: start-up (process start to the second training batch), training (to the start of
the evaluation), evaluation (to the process's exit). The harness's own figures (device time per split, peak
memory) are printed when the harness reports them.

    python bench/eval_share.py [--budget 45] [--eval-tokens 131072 32768] [--runs 1] [--skip-test] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from autoresearch.data.prepare import prepare
from autoresearch.run.supervisor import Experiment, run_experiment
from autoresearch.settings import PROFILES, Settings, cache_dir
from autoresearch.workspace import init_workspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES))
    ap.add_argument("--budget", type=float, default=45.0, help="training seconds per experiment (demo: 45)")
    ap.add_argument("--eval-tokens", type=int, nargs="*", help="evaluation sizes to compare (default: the profile's)")
    ap.add_argument("--runs", type=int, default=1, help="runs per evaluation size")
    ap.add_argument("--skip-test", action="store_true",
                    help="the runner declines the held-out test split (as the loop does for a run it discards)")
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()

    cache = cache_dir(args.cache_dir)
    rows = []
    for eval_tokens in args.eval_tokens or [PROFILES[args.profile].eval_tokens]:
        settings = Settings.from_profile(args.profile, time_budget=args.budget, eval_tokens=eval_tokens)
        prepare(settings, cache, progress=lambda m: None)
        for k in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                ws = init_workspace(Path(tmp) / "ws", settings)
                exp = Experiment(source=(ws / "train.py").read_text(), workspace=ws, settings=settings,
                                 run_dir=ws / ".autoresearch" / "train" / "bench", cache=cache,
                                 **({"wants_test": lambda val_bpb: False} if args.skip_test else {}))
                r = run_experiment(exp)
            if not r.ok:
                print(f"eval_tokens {eval_tokens} run {k}: {r.status}: {r.reason}\n{r.error_tail}")
                continue
            h = r.harness
            train, evaluation = r.training_seconds or 0.0, r.eval_seconds or 0.0
            rows.append((eval_tokens, train, evaluation, r.wall_seconds, h.get("val_seconds"), h.get("test_seconds"),
                         r.val_bpb, r.test_bpb, h.get("peak_memory_mb")))
            print(f"eval_tokens {eval_tokens:>7} | training {train:6.1f}s | evaluation {evaluation:6.1f}s "
                  f"({100 * evaluation / r.wall_seconds:4.1f}% of {r.wall_seconds:.1f}s wall, "
                  f"{100 * evaluation / args.budget:4.1f}% of the budget) | harness: val {_s(h.get('val_seconds'))}"
                  f" test {_s(h.get('test_seconds'))} | val_bpb {r.val_bpb:.4f} test_bpb {_f(r.test_bpb)}"
                  f" | peak {_f(h.get('peak_memory_mb'), '.0f')} MB", flush=True)


def _s(x) -> str:
    return "-" if x is None else f"{x:.1f}s"


def _f(x, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


if __name__ == "__main__":
    main()
