"""`track`: where a run's records go in MLflow, W&B and TensorBoard, and `--replay` to send them there afterwards;
and the trackers of `run --track` (trackers_for)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from click.core import ParameterSource

from autoresearch.cli.common import friendly_errors, workspace_option, workspace_root
from autoresearch.loop.options import RunOptions
from autoresearch.see.track import TRACKERS, Tracker, TrackError
from autoresearch.see.track.config import TRACK_ENV, TrackConfig, make_tracker, parse_names

GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def trackers_for(root: Path, options: RunOptions) -> tuple[RunOptions, list[Tracker], TrackConfig]:
    """The trackers `run` logs to: --track or AUTORESEARCH_TRACK, else `trackers` under [track], else what the run
    had (a resume). Checked now, in milliseconds: unknown names, missing packages, a store where agents could read
    it, W&B without a key."""
    try:
        config = TrackConfig.load(root)
        if click.get_current_context().get_parameter_source("track") not in GIVEN and config.trackers:
            options = replace(options, track=config.trackers)
        return options, [make_tracker(name, root, config) for name in options.track], config
    except TrackError as e:
        raise click.ClickException(str(e)) from e


@click.command()
@workspace_option
@click.option("--tag", help="The run (default: the latest).")
@click.option("--track", "names", multiple=True, envvar=TRACK_ENV,
              help=f"{', '.join(TRACKERS)} (repeat it, or mlflow,wandb). Default: `trackers` under [track] in "
              f"autoresearch.toml, else what the run logged to. Env: {TRACK_ENV}.")
@click.option("--replay", is_flag=True,
              help="Send the run's records from the journal now: what a tracker holds already is skipped, so this "
              "fills what live logging missed, or uploads a run done without --track.")
@friendly_errors
def track(workspace: Path | None, tag: str | None, names: tuple[str, ...], replay: bool) -> None:
    """Where a run's records go in MLflow, W&B and TensorBoard; with --replay, send them there now.

    Each experiment is one tracker run under the research run, with train.py's CAPS constants, the decision and
    its evidence, val and test figures, cost, the training curve, train.py and the diff: the same records as
    `run --track` logs live.
    """
    from autoresearch.see.facts import ReadOnlyJournal, journal_path, pick_run
    from autoresearch.see.track.replay import replay as send_run

    root = workspace_root(workspace)
    try:
        config = TrackConfig.load(root)
        wanted = parse_names(names)
    except TrackError as e:
        raise click.ClickException(str(e)) from e
    journal = ReadOnlyJournal(journal_path(root)) if journal_path(root).exists() else None
    try:
        run = pick_run(journal, tag) if journal is not None else None
        if not wanted:
            wanted = config.trackers or (_recorded(journal, run.tag) if run is not None else ())
        if not wanted:
            raise click.ClickException(f"no tracker named: give --track ({', '.join(TRACKERS)}), set {TRACK_ENV}, "
                                       'or add trackers = ["mlflow"] under [track] in autoresearch.toml')
        try:
            trackers = [make_tracker(name, root, config) for name in wanted]
        except TrackError as e:
            raise click.ClickException(str(e)) from e
        if not replay:
            for t in trackers:
                click.echo(f"{t.name}: {t.where()}")
            return
        if run is None:
            raise click.ClickException("no runs yet: start one with `autoresearch run`")
        if run.state == "running":
            click.echo(f"run {run.tag} is still running: this sends what it has decided so far")
        counts = send_run(journal, run.tag, root, trackers, click.echo)
    finally:
        if journal is not None:
            journal.close()
    if any(c.missing for c in counts.values()):
        raise click.exceptions.Exit(1)


def _recorded(journal, tag: str) -> tuple[str, ...]:
    """The trackers the run's last session logged to."""
    sessions = journal.sessions(tag)
    return tuple(sessions[-1].options.get("track") or ()) if sessions else ()
