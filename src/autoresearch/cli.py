"""The `autoresearch` command line. The only place that turns errors into messages and exit codes."""

from __future__ import annotations

import functools
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from autoresearch.settings import CACHE_ENV, PROFILES, SETTINGS_FILE, WORKSPACE_ENV, Settings, SettingsError, cache_dir


def friendly_errors(fn):
    """Known failures become one clear line and exit code 1; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from autoresearch.harness.data import DataError
        from autoresearch.vcs import VcsError
        from autoresearch.workspace import WorkspaceError

        try:
            return fn(*args, **kwargs)
        except (SettingsError, WorkspaceError, DataError, VcsError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper


workspace_option = click.option(
    "--workspace", "-w", type=click.Path(file_okay=False, path_type=Path), envvar=WORKSPACE_ENV,
    help=f"Workspace directory (default: the current directory or a parent with {SETTINGS_FILE}). "
    f"Env: {WORKSPACE_ENV}.")
cache_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CACHE_ENV,
    help=f"Where datasets and prepared tokens live (default ~/.cache/autoresearch). Env: {CACHE_ENV}.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="autoresearch")
def cli() -> None:
    """autoresearch: an agent edits train.py, a fixed harness measures val_bpb, git keeps what helps."""


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile", type=click.Choice(list(PROFILES)), help="Hardware profile (default: detected).")
@click.option("--dataset", default="embedded", show_default=True,
              help="embedded (offline, generated), climbmix, tinystories, or a directory/glob of "
              ".txt/.md/.jsonl/.parquet files.")
@click.option("--time-budget", type=float, help="Seconds of training per experiment (profile default).")
@click.option("--vocab-size", type=int, help="BPE vocabulary size (profile default).")
@click.option("--max-seq-len", type=int, help="Tokens per training row (profile default).")
@click.option("--eval-tokens", type=int, help="Tokens evaluate_bpb scores (profile default).")
@friendly_errors
def init(directory: Path, profile: str | None, dataset: str, time_budget: float | None, vocab_size: int | None,
         max_seq_len: int | None, eval_tokens: int | None) -> None:
    """Create a research workspace in DIRECTORY: a git repo with train.py, program.md and autoresearch.toml."""
    from autoresearch.settings import detect_profile
    from autoresearch.workspace import init_workspace

    if profile is None:
        profile = detect_profile()
        click.echo(f"profile: {profile} (detected; {PROFILES[profile].description})")
    settings = Settings.from_profile(profile, dataset=dataset, time_budget=time_budget, vocab_size=vocab_size,
                                     max_seq_len=max_seq_len, eval_tokens=eval_tokens)
    path = init_workspace(directory, settings)
    click.echo(f"created workspace {path}")
    click.echo(f"next: cd {directory} && autoresearch prepare && autoresearch train")


@cli.command()
@workspace_option
@cache_option
@click.option("--dataset", help="Outside a workspace: dataset to prepare (see `init --dataset`).")
@click.option("--profile", type=click.Choice(list(PROFILES)), help="Outside a workspace: profile for sizes.")
@click.option("--vocab-size", type=int, help="Outside a workspace: vocabulary size.")
@click.option("--train-shards", type=int, help="Hub datasets: number of training shards to download.")
@click.option("--workers", type=int, help="Processes for generation and tokenization (default: cores, max 8).")
@friendly_errors
def prepare(workspace: Path | None, cache_dir: Path | None, dataset: str | None, profile: str | None,
            vocab_size: int | None, train_shards: int | None, workers: int | None) -> None:
    """Download or generate the data, train the tokenizer, tokenize train/val/test."""
    from autoresearch.prepare import prepare as run_prepare

    settings = _settings_for_prepare(workspace, dataset, profile, vocab_size, train_shards)
    cache = _cache(cache_dir)
    report = run_prepare(settings, cache, progress=click.echo, workers=workers)
    click.echo(f"prepared {settings.dataset!r} in {report.seconds:.1f}s -> {report.directory}")
    click.echo(f"evaluation: {report.eval_rows['val']} rows of {settings.max_seq_len} tokens (val and test)")
    for split, floor in report.floor_bpb.items():
        click.echo(f"entropy floor ({split}): {floor:.4f} bits per byte (no model can score lower)")


def _settings_for_prepare(workspace, dataset, profile, vocab_size, train_shards) -> Settings:
    from autoresearch.harness.constants import find_workspace

    try:
        root = _workspace_root(workspace)
    except SettingsError:
        if not (dataset or profile):
            raise
        root = None
    if root is not None:
        if dataset or profile or vocab_size:
            raise SettingsError("inside a workspace, prepare reads autoresearch.toml; drop --dataset/--profile/"
                                "--vocab-size (or run outside the workspace)")
        settings = Settings.load(root / SETTINGS_FILE)
        return settings.replace(train_shards=train_shards) if train_shards else settings
    from autoresearch.settings import detect_profile

    return Settings.from_profile(profile or detect_profile(), dataset=dataset or "embedded", vocab_size=vocab_size,
                                 train_shards=train_shards)


def _workspace_root(workspace: Path | None) -> Path:
    from autoresearch.harness.constants import find_workspace

    if workspace is not None:
        root = workspace.expanduser().resolve()
        if not (root / SETTINGS_FILE).exists():
            raise SettingsError(f"{root} is not a workspace (no {SETTINGS_FILE}); create one with `autoresearch init`")
        return root
    return find_workspace()


def _cache(flag: Path | None) -> Path:
    return cache_dir(flag).resolve()


@cli.command()
@workspace_option
@cache_option
@click.option("--timeout", type=float, help="Kill the run after this many seconds (default: 2 x budget, "
              "at least budget + 120 s).")
@friendly_errors
def train(workspace: Path | None, cache_dir: Path | None, timeout: float | None) -> None:
    """Run the workspace's train.py once, show its progress, and print the harness's official result."""
    from autoresearch.harness.constants import prepared_dir
    from autoresearch.runner import Experiment, run_experiment
    from autoresearch.ui import RunView

    root = _workspace_root(workspace)
    settings = Settings.load(root / SETTINGS_FILE)
    cache = _cache(cache_dir)
    if not (prepared_dir(settings, cache) / "meta.json").exists():
        raise click.ClickException("the data is not prepared yet: run `autoresearch prepare` in the workspace first")
    run_dir = root / ".autoresearch" / "train" / datetime.now().strftime("%Y%m%d-%H%M%S")
    exp = Experiment(source=(root / "train.py").read_text(), workspace=root, settings=settings, run_dir=run_dir,
                     timeout=timeout, cache=cache)
    with RunView(budget=settings.time_budget, title="train.py") as view:
        result = run_experiment(exp, on_line=view.line, on_progress=view.progress)
    click.echo(f"log: {result.log_path}")
    if not result.ok:
        click.echo(result.error_tail, err=True)
        raise click.ClickException(f"run {result.status}: {result.reason}")
    click.echo(f"official (harness): val_bpb {result.val_bpb:.6f} | test_bpb {result.test_bpb:.6f} (held out)"
               f" | {result.wall_seconds:.1f}s wall")


def main() -> None:
    cli(prog_name="autoresearch")


if __name__ == "__main__":
    sys.exit(main())
