"""Seeing a run: `status`, `report` and `dashboard`. They read the journal only (no torch, no loop)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from autoresearch.cli.common import cache_option, friendly_errors, resolved_cache, workspace_option, workspace_root


@click.command()
@workspace_option
@click.option("--tag", help="The run to show (default: the latest).")
@click.option("--all", "all_runs", is_flag=True, help="List every run of the workspace.")
@friendly_errors
def status(workspace: Path | None, tag: str | None, all_runs: bool) -> None:
    """Print the table of experiments of a run and the best result so far."""
    # Only the journal: nothing here may import the loop or the harness (torch takes seconds to import).
    from autoresearch.loop.journal import Journal
    from autoresearch.see.facts import as_seen, journal_path
    from autoresearch.see.ui import metric_name, status_table, summary_line, wide_console

    root = workspace_root(workspace)
    journal = Journal(journal_path(root))
    runs = journal.runs()
    if not runs:
        raise click.ClickException("no runs yet: start one with `autoresearch run`")
    if all_runs:
        for r in runs:
            recs = journal.final_attempts(r.tag)
            sessions = journal.sessions(r.tag)
            click.echo(f"{r.tag:<16} {r.branch:<28} {r.agent:<24} {as_seen(r, sessions).state:<8} "
                       f"{summary_line(recs, run=r, sessions=sessions)}")
        return
    run = journal.run(tag) if tag else runs[-1]
    if run is None:
        raise click.ClickException(f"no run tagged {tag!r}; see `autoresearch status --all`")
    records = journal.final_attempts(run.tag)
    sessions = journal.sessions(run.tag)
    run = as_seen(run, sessions)
    wide_console().print(status_table(records, title=f"run {run.tag} ({run.branch}, agent {run.agent}, {run.state})",
                                      metric=metric_name(run)))
    click.echo(summary_line(records, journal.totals(run.tag), run, sessions))
    from autoresearch.see.facts import agent_figures, busy

    every = journal.experiments(run.tag)
    for b in busy(every, run):
        where = " ".join(x for x in (f"w{b.worker}" if b.worker else "", b.device, b.node) if x)
        if b.state == "interrupted":
            click.echo(f"interrupted: experiment {b.number} ({b.description})"
                       + (f" on {where}" if b.worker else "") + "; `run --resume` runs it again")
            continue
        progress = (f"step {b.step} ({b.percent:.0f}%), loss {b.loss:.4f}" if b.step is not None
                    else "the agent is at work" if b.state == "proposed" else "starting")
        click.echo(f"running: experiment {b.number} ({b.description})" + (f" on {where}" if where else "")
                   + f" | {progress} | {b.seconds / 60:.1f} min")
    figures = agent_figures(every)
    if len(figures) > 1:
        for a in figures:
            click.echo(f"agent {a.agent}: {a.kept} kept of {a.experiments}"
                       + (f" ({a.keep_rate:.0%})" if a.keep_rate is not None else "")
                       + f", val_bpb -{a.gain:.4f}"
                       + (f" ({a.gain_per_hour:.4f}/h)" if a.gain_per_hour is not None else "")
                       + f", ${a.cost:.2f}" + (f" (${a.cost_per_keep:.2f} per keep)" if a.cost_per_keep else ""))
    if run.stop_reason:
        click.echo(f"last stop: {run.stop_reason}")


@click.command()
@workspace_option
@cache_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for progress.png and report.html (default: <workspace>/.autoresearch/report).")
@click.option("--tag", help="The run to report (default: the latest).")
@friendly_errors
def report(workspace: Path | None, cache_dir: Path | None, out: Path | None, tag: str | None) -> None:
    """Write progress.png and a self-contained report.html about a run: what was tried, what was kept, how far
    val_bpb came and what it cost. The page works offline; paste the PNG into a chat."""
    from autoresearch.see.report import write_report

    root = workspace_root(workspace)
    files = write_report(root, out=out.expanduser().resolve() if out else None, tag=tag,
                         cache=resolved_cache(cache_dir))
    click.echo(f"plot:   {files.png}")
    click.echo(f"report: {files.html}")


@click.command()
@workspace_option
@cache_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes your journal (diffs, costs) to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--tag", help="The run to show (default: the latest, switching to a new run when one starts).")
@click.option("--open/--no-open", "open_browser", default=True, show_default=True,
              help="Open the page in a browser (only where there is a display).")
@friendly_errors
def dashboard(workspace: Path | None, cache_dir: Path | None, host: str, port: int, tag: str | None,
              open_browser: bool) -> None:
    """Serve a live web page of a run: progress chart, the training loss of the running experiment, every
    experiment, the best diff. It reads the journal only, so start it beside `autoresearch run` or after it."""
    import os
    import webbrowser

    from autoresearch.see.dashboard import serve

    root = workspace_root(workspace)
    try:
        server = serve(root, host=host, port=port, tag=tag, cache=resolved_cache(cache_dir))
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror or e}): pick another --port, "
                                   "or 0 for any free one") from e
    click.echo(f"dashboard of {root} at {server.url} (Ctrl-C to stop)")
    if open_browser and (sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY")
                         or os.environ.get("WAYLAND_DISPLAY")):
        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


