"""`train`: one run of the workspace's train.py, with a progress bar and the official result."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from autoresearch.cli.common import (
    cache_option,
    friendly_errors,
    resolved_cache,
    secs,
    workspace_option,
    workspace_root,
)
from autoresearch.settings import SETTINGS_FILE, Settings


@click.command()
@workspace_option
@cache_option
@click.option("--timeout", type=float, help="Also kill the run after this many seconds in all (default: none; "
              "start-up, training and evaluation each have their own limit).")
@friendly_errors
def train(workspace: Path | None, cache_dir: Path | None, timeout: float | None) -> None:
    """Run the workspace's train.py once, show its progress, and print the harness's official result."""
    from autoresearch.harness.constants import prepared_dir
    from autoresearch.run.compile_cache import SEED_DIR
    from autoresearch.run.supervisor import Experiment, protect_orchestrator, run_experiment
    from autoresearch.see.ui import RunView

    root = workspace_root(workspace)
    settings = Settings.load(root / SETTINGS_FILE)
    cache = resolved_cache(cache_dir)
    if not (prepared_dir(settings, cache) / "meta.json").exists():
        raise click.ClickException("the data is not prepared yet: run `autoresearch prepare` in the workspace first")
    run_dir = root / ".autoresearch" / "train" / datetime.now().strftime("%Y%m%d-%H%M%S")
    exp = Experiment(source=(root / "train.py").read_text(), workspace=root, settings=settings, run_dir=run_dir,
                     timeout=timeout, cache=cache, compile_cache=root / ".autoresearch" / SEED_DIR)  # read only
    protect_orchestrator()
    with RunView(budget=settings.time_budget, title="train.py") as view:
        result = run_experiment(exp, on_line=view.line, on_progress=view.progress)
    (run_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    click.echo(f"log: {result.log_path}")
    if not result.ok:  # its output, the traceback included, was shown as it ran
        raise click.ClickException(f"run {result.status}: {result.reason}")
    test = f"{result.test_bpb:.6f} (held out)" if result.test_bpb is not None else "not scored"
    click.echo(f"official (harness): val_bpb {result.val_bpb:.6f} | test_bpb {test} | {result.wall_seconds:.1f}s wall")
    click.echo(f"clock (runner): start-up {secs(result.startup_seconds)} | training {secs(result.training_seconds)}"
               f" | evaluation {secs(result.eval_seconds)} | {result.steps or 0} steps, "
               f"{result.train_tokens or 0:,} training tokens"
               + (f" at {result.tokens_per_second:,.0f} tokens/s" if result.tokens_per_second else ""))


