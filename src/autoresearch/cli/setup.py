"""Making a workspace and its data: `init` and `prepare`."""

from __future__ import annotations

from pathlib import Path

import click

from autoresearch.cli.common import cache_option, friendly_errors, resolved_cache, workspace_option, workspace_root
from autoresearch.settings import PROFILES, SETTINGS_FILE, Settings, SettingsError


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile", type=click.Choice(list(PROFILES)), help="Hardware profile (default: detected).")
@click.option("--dataset", default="embedded", show_default=True,
              help="embedded (offline, generated), climbmix, tinystories, or a directory/glob of "
              ".txt/.md/.jsonl/.parquet files.")
@click.option("--time-budget", type=float, help="Seconds of training per experiment (profile default).")
@click.option("--token-budget", type=int,
              help="Training tokens per experiment instead: the loader ends after them, and the time budget is "
              "only a cap (10x). Results then do not depend on the machine's speed or load: recommended on a "
              "shared or busy machine.")
@click.option("--startup-limit", type=float,
              help="Seconds from launch to the first training batch (imports, data, the model); default max(600, "
              "2 x the time budget). warmup_limit in autoresearch.toml bounds the untimed compilation after it.")
@click.option("--vocab-size", type=int, help="BPE vocabulary size (profile default).")
@click.option("--max-seq-len", type=int, help="Tokens per training row (profile default).")
@click.option("--eval-tokens", type=int, help="Tokens evaluate_bpb scores (profile default).")
@click.option("--task", "task_path", type=click.Path(exists=True, path_type=Path),
              help="A task directory (task.toml): your own script, evaluator and data instead of the GPT.")
@friendly_errors
def init(directory: Path, profile: str | None, dataset: str, time_budget: float | None, token_budget: int | None,
         startup_limit: float | None, vocab_size: int | None, max_seq_len: int | None,
         eval_tokens: int | None, task_path: Path | None = None) -> None:
    """Create a research workspace in DIRECTORY: a git repo with train.py, program.md and autoresearch.toml
    (with --task: a git repo of your task's editable and fixed files; its hidden files kept for the evaluator)."""
    if task_path is not None:
        from autoresearch.task.declaration import TaskError
        from autoresearch.task.store import init_task_workspace

        from autoresearch.settings import detect_profile
        from autoresearch.task.declaration import load_task

        try:
            task = load_task(task_path)  # the settings below need its budget; errors come before anything exists
            settings = Settings.from_profile(profile or detect_profile(), time_budget=task.time_budget or task.timeout,
                                             allowed_imports=task.allowed_imports)
            path, warnings = init_task_workspace(directory, task_path, settings_toml=settings.to_toml())
        except TaskError as e:
            raise click.ClickException(str(e)) from e
        for w in warnings:
            click.echo(f"warning: evaluator: {w}", err=True)
        click.echo(f"created task workspace {path}")
        return
    from autoresearch.data.sources import check_dataset
    from autoresearch.settings import detect_profile
    from autoresearch.workspace import init_workspace

    dataset = check_dataset(dataset)
    if profile is None:
        profile = detect_profile()
        click.echo(f"profile: {profile} (detected; {PROFILES[profile].description})")
    settings = Settings.from_profile(profile, dataset=dataset, time_budget=time_budget, token_budget=token_budget,
                                     startup_limit=startup_limit, vocab_size=vocab_size, max_seq_len=max_seq_len,
                                     eval_tokens=eval_tokens)
    path = init_workspace(directory, settings)
    click.echo(f"created workspace {path}")
    click.echo(f"next: cd {directory} && autoresearch prepare && autoresearch train")


@click.command()
@workspace_option
@cache_option
@click.option("--dataset", help="Dataset to prepare (see `init --dataset`). Inside a workspace that has no runs "
              "yet, this changes the workspace's dataset (autoresearch.toml, committed); once it has runs, start a "
              "new workspace instead.")
@click.option("--profile", type=click.Choice(list(PROFILES)), help="Outside a workspace: profile for sizes.")
@click.option("--vocab-size", type=int, help="Outside a workspace: vocabulary size.")
@click.option("--train-shards", type=int, help="Hub datasets: number of training shards to download.")
@click.option("--tokenizer-chars", type=int,
              help="Outside a workspace: characters the tokenizer trains on (default: 1e9 for climbmix, as the "
              "original; 1e8 otherwise). Inside one, set tokenizer_chars in autoresearch.toml.")
@click.option("--workers", type=int, help="Processes for generation and tokenization (default: cores, max 8).")
@click.option("--fetch-kernels", is_flag=True, envvar="AUTORESEARCH_FETCH_KERNELS",
              help="Download the FlashAttention 3 kernel even where this machine has no CUDA GPU (to share the "
              "cache with GPU machines). Without it, it is fetched only when the `kernels` package is installed "
              "and CUDA is available. Env: AUTORESEARCH_FETCH_KERNELS.")
@friendly_errors
def prepare(workspace: Path | None, cache_dir: Path | None, dataset: str | None, profile: str | None,
            vocab_size: int | None, train_shards: int | None, tokenizer_chars: int | None,
            workers: int | None, fetch_kernels: bool) -> None:
    """Download or generate the data, train the tokenizer, tokenize train/val/test.

    On a CUDA machine with `pip install 'autoresearch[cuda]'`, also fetch the FlashAttention 3 kernel into the
    local Hugging Face cache: experiments have no network and load it from there (Hopper GPUs only; without it
    training uses compiled flex_attention). No network for it: prepare says so and goes on.
    """
    from autoresearch.data.attention_kernel import fetch_attention_kernel
    from autoresearch.data.prepare import prepare as run_prepare

    settings = _settings_for_prepare(workspace, dataset, profile, vocab_size, train_shards, tokenizer_chars)
    cache = resolved_cache(cache_dir)
    report = run_prepare(settings, cache, progress=click.echo, workers=workers)
    click.echo(f"prepared {settings.dataset!r} in {report.seconds:.1f}s -> {report.directory}")
    click.echo(f"evaluation: {report.eval_rows['val']} rows of {settings.max_seq_len} tokens (val and test)")
    for split, floor in report.floor_bpb.items():
        click.echo(f"entropy floor ({split}): {floor:.4f} bits per byte (no model can score lower)")
    fetch_attention_kernel(progress=click.echo, force=fetch_kernels)


def _settings_for_prepare(workspace, dataset, profile, vocab_size, train_shards, tokenizer_chars) -> Settings:

    try:
        root = workspace_root(workspace)
    except SettingsError:
        if not (dataset or profile):
            raise
        root = None
    if root is not None:
        if profile or vocab_size or tokenizer_chars:
            raise SettingsError("inside a workspace, prepare reads autoresearch.toml; drop --profile/--vocab-size/"
                                "--tokenizer-chars (or run outside the workspace, or start a new one with "
                                "`autoresearch init`)")
        settings = Settings.load(root / SETTINGS_FILE)
        if dataset:
            settings = _change_dataset(root, settings, dataset)
        return settings.replace(train_shards=train_shards) if train_shards else settings
    from autoresearch.settings import detect_profile

    return Settings.from_profile(profile or detect_profile(), dataset=dataset or "embedded", vocab_size=vocab_size,
                                 train_shards=train_shards, tokenizer_chars=tokenizer_chars)


def _change_dataset(root: Path, settings: Settings, dataset: str) -> Settings:
    """`prepare --dataset` inside a workspace: allowed while no run has measured anything on the old dataset."""
    from autoresearch import vcs
    from autoresearch.data.sources import check_dataset
    from autoresearch.see.facts import journal_path

    dataset = check_dataset(dataset)
    if dataset == settings.dataset:
        return settings
    journal = journal_path(root)
    if journal.exists():
        from autoresearch.loop.journal import Journal

        j = Journal(journal)
        try:
            runs = j.runs()
        finally:
            j.close()
        if runs:
            raise SettingsError(
                f"this workspace already has {len(runs)} run(s) measured on dataset {settings.dataset!r}; results "
                f"on another dataset would not compare. Start a new workspace: autoresearch init NEW_DIR --dataset "
                f"{dataset} --profile {settings.profile} (nothing was changed)")
    changed = settings.replace(dataset=dataset)
    (root / SETTINGS_FILE).write_text(changed.to_toml())
    vcs.commit_file(root, SETTINGS_FILE, f"dataset: {settings.dataset} -> {dataset}")
    click.echo(f"dataset of this workspace: {settings.dataset} -> {dataset} ({SETTINGS_FILE}, committed)")
    return changed


