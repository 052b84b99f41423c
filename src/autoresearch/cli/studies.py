"""The commands that study a finished run: `ablate` (what each kept change is worth) and `transfer` (does the gain
hold at a larger setting). The package registers them on the `autoresearch` group."""

from __future__ import annotations

from pathlib import Path

import click

from autoresearch.cli.common import cache_option, friendly_errors, resolved_cache, workspace_option, workspace_root
from autoresearch.settings import SETTINGS_FILE, Settings

tag_of_study = click.option("--tag", help="The run to study (default: the latest).")
seeds_option = click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True,
                            help="Runs of each variant, each with another seed (train.py's SEED + 1000 k).")
study_workers = click.option("--workers", type=click.IntRange(min=1),
                             help="Runs at once, as `run --workers` (default: one per visible GPU; 1 on CPU).")
study_per_device = click.option("--per-device", type=click.IntRange(min=1), default=1, show_default=True,
                                help="Workers sharing each GPU.")
study_timeout = click.option("--timeout", type=float, help="Also kill a run after this many seconds in all.")


@click.command()
@workspace_option
@cache_option
@tag_of_study
@seeds_option
@study_workers
@study_per_device
@study_timeout
@friendly_errors
def ablate(workspace: Path | None, cache_dir: Path | None, tag: str | None, seeds: int, workers: int | None,
           per_device: int, timeout: float | None) -> None:
    """Measure what each kept change of a run is worth: the best with that change reverted, against the best,
    with several seeds each, on the held-out test split. A change whose worth is within the noise is flagged
    "worth nothing". A change that only set constants is taken out by name; any other is reverted line by line,
    and one whose revert conflicts with a later change is reported, with the lines, and skipped.

    The run must be stopped. Its branch and results.tsv stay as they are: the figures go to the journal, and
    `autoresearch report` shows them beside each kept change.
    """
    from autoresearch.loop.ablate import ablate as run_ablation
    from autoresearch.loop.measure import StudyError
    from autoresearch.see.studies import ablation_lines

    root, settings, cache = _study_setup(workspace, cache_dir)

    def planned(a) -> None:
        measured = [c for c in a.changes if c.status == "measured"]
        click.echo(f"ablating run {a.tag}: the best (#{a.best_number}) and the best without each of "
                   f"{len(measured)} change(s), {seeds} seed(s) each ({(1 + len(measured)) * seeds if measured else 0}"
                   f" runs of {settings.budget_label})")
        for c in a.changes:
            if c.status != "measured":
                click.echo(f"#{c.number} {c.description}: {c.verdict} ({c.note})")

    try:
        result = run_ablation(root, settings, tag=tag, seeds=seeds, workers=workers, per_device=per_device,
                              cache=cache, timeout=timeout, on_plan=planned, on_run=_echo_run)
    except StudyError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        click.echo("interrupted: the runs measured so far are in the journal (measurements); run ablate again",
                   err=True)
        click.get_current_context().exit(130)
    click.echo("")
    for line in ablation_lines(result):
        click.echo(line)


@click.command()
@workspace_option
@cache_option
@click.option("--set", "sets", multiple=True, required=True, metavar="NAME=VALUE",
              help="A CAPS constant of train.py and its value at the new setting (repeatable), e.g. DEPTH=12.")
@tag_of_study
@seeds_option
@click.option("--time-budget", type=float, help="Seconds of training per run, for these runs only (default: the "
              "workspace's budget).")
@click.option("--token-budget", type=int, help="Training tokens per run instead, for these runs only.")
@study_workers
@study_per_device
@study_timeout
@friendly_errors
def transfer(workspace: Path | None, cache_dir: Path | None, sets: tuple[str, ...], tag: str | None, seeds: int,
             time_budget: float | None, token_budget: int | None, workers: int | None, per_device: int,
             timeout: float | None) -> None:
    """Does the run's gain hold at a larger setting? Run the baseline and the best, both with --set applied,
    with several seeds each, and compare: the gain "holds" (the best still wins by more than the noise),
    "shrinks" (within the noise) or "reverses" (the baseline wins).

    The run must be stopped. Its branch and results.tsv stay as they are: the figures go to the journal, and
    `autoresearch report` shows them.
    """
    from autoresearch.loop.measure import StudyError
    from autoresearch.loop.transfer import parse_sets
    from autoresearch.loop.transfer import transfer as run_transfer
    from autoresearch.see.studies import transfer_lines

    root, settings, cache = _study_setup(workspace, cache_dir)

    def planned(t) -> None:
        click.echo(f"transfer of run {t.tag}: baseline (#1) and best (#{t.best_number}) at "
                   + " ".join(sets) + f", {seeds} seed(s) each ({2 * seeds} runs of {t.budget})")

    try:
        result = run_transfer(root, settings, parse_sets(sets), tag=tag, seeds=seeds, time_budget=time_budget,
                              token_budget=token_budget, workers=workers, per_device=per_device, cache=cache,
                              timeout=timeout, on_plan=planned, on_run=_echo_run)
    except StudyError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        click.echo("interrupted: the runs measured so far are in the journal (measurements)", err=True)
        click.get_current_context().exit(130)
    click.echo("")
    for line in transfer_lines(result):
        click.echo(line)


def _study_setup(workspace: Path | None, cache_dir: Path | None) -> tuple[Path, Settings, Path]:
    from autoresearch.paths import prepared_dir
    from autoresearch.run.supervisor import protect_orchestrator

    root = workspace_root(workspace)
    settings = Settings.load(root / SETTINGS_FILE)
    cache = resolved_cache(cache_dir)
    from autoresearch.task.store import is_task_workspace

    if not is_task_workspace(root) and not (prepared_dir(settings, cache) / "meta.json").exists():
        raise click.ClickException(f"the data of dataset {settings.dataset!r} is not prepared yet: run "
                                   "`autoresearch prepare` in the workspace first")
    protect_orchestrator()
    return root, settings, cache


def _echo_run(m) -> None:
    r = m.result
    if r.ok:
        test = f", test_bpb {r.test_bpb:.6f}" if r.test_bpb is not None else ""
        click.echo(f"  {m.variant} (seed {m.seed}): val_bpb {r.val_bpb:.6f}{test} in {r.wall_seconds:.0f}s")
    else:
        click.echo(f"  {m.variant} (seed {m.seed}): {r.status}: {r.reason}")
