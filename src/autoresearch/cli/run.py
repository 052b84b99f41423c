"""`run`: the research loop, with everything that can fail checked first, in seconds."""

from __future__ import annotations

from pathlib import Path

import click

from autoresearch.cli.common import cache_option, friendly_errors, resolved_cache, workspace_option, workspace_root
from autoresearch.loop.options import DEFAULTS, RunOptions, default_tag
from autoresearch.settings import SETTINGS_FILE, Settings


@click.command()
@workspace_option
@cache_option
@click.option("--tag", help="Name of the run; its branch is autoresearch/<tag> (default: today, e.g. nov21).")
@click.option("--resume", is_flag=True, help="Continue an existing run (the latest, or --tag) after a stop or crash, "
              "with the agent, policy and limits it had; options given again replace those (and it says so).")
@click.option("--agent", "agent_spec", multiple=True, default=DEFAULTS.agent, show_default=True,
              envvar="AUTORESEARCH_AGENT",
              help="search | anthropic:MODEL | openai:MODEL | claude-code | codex | cmd:\"COMMAND\". Repeat it to "
              "run several side by side: the workers take them in turn. Env: AUTORESEARCH_AGENT.")
@click.option("--base-url", envvar="AUTORESEARCH_BASE_URL",
              help="OpenAI-compatible server for openai:MODEL (Ollama, vLLM, llama.cpp, LM Studio).")
@click.option("--prices", "prices_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="TOML price table overriding the built-in USD per million tokens.")
@click.option("--max-experiments", type=click.IntRange(min=1), help="Stop after this many experiments in the run.")
@click.option("--more", type=click.IntRange(min=1), help="With --resume: N more experiments than the run has "
              "finished (its --max-experiments becomes finished + N, for later resumes too).")
@click.option("--max-hours", type=float, help="Stop starting experiments after this many hours (of this session).")
@click.option("--max-cost", type=float, help="Stop when the agent's usage reaches this many USD.")
@click.option("--fix-attempts", type=click.IntRange(min=0), default=DEFAULTS.fix_attempts, show_default=True,
              help="Times an agent may repair its own crashed change before it is recorded as a crash.")
@click.option("--timeout", type=float, help="Also kill an experiment after this many seconds in all (default: "
              "none; start-up, training and evaluation each have their own limit).")
@click.option("--agent-timeout", type=float, help="Time limit of one agent call, seconds.")
@click.option("--agent-sandbox/--no-agent-sandbox", default=True, show_default=True,
              envvar="AUTORESEARCH_AGENT_SANDBOX",
              help="Confine command agents (claude-code, codex, cmd:): they cannot read the journal, .autoresearch/ "
              "or the prepared data (Linux: namespaces; not possible elsewhere: turn it off there). Env: "
              "AUTORESEARCH_AGENT_SANDBOX.")
@click.option("--policy", type=click.Choice(["noise", "greedy"]), default=DEFAULTS.policy, show_default=True,
              help="noise: keep a change only when its gain clears the measured noise floor; "
              "greedy: keep any improvement (the original's rule).")
@click.option("--noise-runs", type=click.IntRange(min=0), default=DEFAULTS.noise_runs, show_default=True,
              help="noise policy: extra runs of the baseline with other seeds, to measure the noise floor.")
@click.option("--sigmas", type=click.FloatRange(min=0), default=DEFAULTS.sigmas, show_default=True,
              help="noise policy: the margin a gain must clear, in standard deviations of the noise.")
@click.option("--confirm-runs", type=click.IntRange(min=0), default=DEFAULTS.confirm_runs, show_default=True,
              help="noise policy: extra runs (other seeds) of a marginal winner before deciding.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed of the search agent.")
@click.option("--sampler", type=click.Choice(["tpe", "cmaes", "random"]), default=DEFAULTS.sampler, show_default=True,
              help="The search agent's Optuna sampler: tpe (Bayesian, the default), cmaes (CMA-ES) or random.")
@click.option("--workers", type=click.IntRange(min=1), help="Experiments at once (default: one per visible GPU; 1 "
              "on CPU and MPS). Each worker has its own device, git worktree and processes.")
@click.option("--per-device", type=click.IntRange(min=1), default=DEFAULTS.per_device, show_default=True,
              help="Workers sharing each GPU (the baseline and the noise floor are measured under the same sharing).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default=DEFAULTS.backend, show_default=True,
              help="local: this machine's devices; ray: tasks on a Ray cluster (pip install 'autoresearch[ray]').")
@click.option("--address", envvar="RAY_ADDRESS", help="The Ray cluster's address (--backend ray). Env: RAY_ADDRESS.")
@click.option("--track", multiple=True, envvar="AUTORESEARCH_TRACK",
              help="Also log each experiment to mlflow, wandb or tensorboard, beside the loop (repeat it, or "
              "mlflow,wandb; `none`: no tracker): a tracker that fails or hangs never slows or stops the run. "
              "Default: `trackers` under [track] in autoresearch.toml. Env: AUTORESEARCH_TRACK.")
@friendly_errors
def run(workspace: Path | None, cache_dir: Path | None, tag: str | None, resume: bool,
        agent_spec: tuple[str, ...], base_url: str | None, prices_file: Path | None,
        max_experiments: int | None, more: int | None, max_hours: float | None, max_cost: float | None,
        fix_attempts: int, timeout: float | None, agent_timeout: float | None,
        agent_sandbox: bool, policy: str, noise_runs: int, sigmas: float, confirm_runs: int, seed: int, sampler: str,
        workers: int | None, per_device: int, backend: str, address: str | None, track: tuple[str, ...]) -> None:
    """Run the research loop: the agent proposes, the harness judges, git keeps the winners.

    The first experiment is the unchanged baseline. Each later one: the agent edits train.py, the loop checks
    and commits it, trains for the time budget, keeps the commit if val_bpb improved and resets the branch
    otherwise. Records go to results.tsv and the journal (.autoresearch/journal.db). Ctrl-C stops cleanly (exit
    status 130); `--resume` continues after any stop, even a crash of this process.
    """
    from autoresearch.loop.options import OptionsError
    from autoresearch.see.track import TrackError
    from autoresearch.see.track.config import parse_names

    try:  # first: a limit no run can use must not create a run, a branch or a results file
        track = parse_names(track)
        given = RunOptions(agent=agent_spec, base_url=base_url, prices=str(prices_file.resolve()) if prices_file
                           else None, seed=seed, sampler=sampler, agent_timeout=agent_timeout, policy=policy,
                           sigmas=sigmas, noise_runs=noise_runs, confirm_runs=confirm_runs, fix_attempts=fix_attempts,
                           timeout=timeout, max_experiments=max_experiments, max_hours=max_hours, max_cost=max_cost,
                           workers=workers, per_device=per_device, backend=backend, address=address, track=track)
    except (OptionsError, TrackError) as e:
        raise click.UsageError(str(e)) from e
    if more is not None and not resume:
        raise click.UsageError("--more N adds experiments to a run: use it with --resume (a new run takes "
                               "--max-experiments N)")
    if more is not None and max_experiments is not None:
        raise click.UsageError("give --more (experiments to add) or --max-experiments (the run's total), not both")
    root = workspace_root(workspace)
    settings = Settings.load(root / SETTINGS_FILE)
    cache = resolved_cache(cache_dir)
    options, notes = given, []
    if resume:
        tag, options, notes = _resumed_options(root, tag, given, more)
    from autoresearch.cli.track import trackers_for

    options, trackers, track_config = trackers_for(root, options)
    from autoresearch.backends import BackendError, make_backend

    try:
        where = make_backend(options.backend, profile=settings.profile, workers=options.workers,
                             per_device=options.per_device, address=options.address)
    except BackendError as e:
        raise click.ClickException(str(e)) from e
    slots = where.slots()
    tag = tag or default_tag()
    # One agent per worker (a search agent's seed differs per worker, so two never walk the same path; they share
    # the run's study).
    agents = [_checked_agent(root, settings, cache, options.agent[k % len(options.agent)], seed=options.seed + k,
                             base_url=options.base_url, prices_file=Path(options.prices) if options.prices else None,
                             agent_timeout=options.agent_timeout, agent_sandbox=agent_sandbox,
                             sampler=options.sampler, tag=tag,
                             hidden=tuple(p for t in trackers for p in t.private_paths()))
              for k in range(len(slots))]
    # Only now the loop and the live view: what can fail at once has been checked, in seconds.
    from autoresearch.loop.core import Loop, LoopConfig, LoopError
    from autoresearch.see.ui import LoopView, status_table, summary_line, wide_console

    loop = Loop(root, settings, agents, LoopConfig.from_options(tag, options, resume=resume, cache=cache),
                backend=where)
    try:
        notes += loop.start()
    except LoopError as e:
        raise click.ClickException(str(e)) from e
    names = " + ".join(dict.fromkeys(a.name for a in agents))
    places = f" | {len(slots)} workers: " + ", ".join(s.label for s in slots) if len(slots) > 1 else ""
    budget = settings.budget_label if loop.metric.name == "val_bpb" or not is_task_workspace(root) else \
        _task_budget(root)
    click.echo(f"run {tag} on branch autoresearch/{tag} | agent {names} | {budget} per experiment{places}"
               + (f" | {loop.metric.describe()}" if is_task_workspace(root) else ""))
    for note in [*getattr(where, "notes", []), *notes]:
        click.echo(note)
    for t in trackers:
        click.echo(f"tracking: {t.name} -> {t.where()}")
    tracking = None
    metric = loop.metric.name
    with LoopView(loop.journal, tag, names, vocab=None if metric != "val_bpb" else settings.vocab_size,
                  metric=metric) as view:
        loop.view = view
        if trackers:
            from autoresearch.see.track.lanes import Tracking

            tracking = Tracking(trackers, view.message, timeout=track_config.timeout)
            tracking.start(loop.journal, tag, root)
            loop.ledger.watchers.append(tracking.feed)
        reason = loop.run_until_limit()
    records = loop.journal.final_attempts(tag)
    run_record = loop.journal.run(tag)
    wide_console().print(status_table(records, title=f"run {tag}", metric=metric))
    click.echo(summary_line(records, loop.journal.totals(tag), run_record, loop.journal.sessions(tag)))
    click.echo(f"stopped: {reason}")
    for line in tracking.close() if tracking else ():
        click.echo(line)
    loop.journal.close()
    if loop.exit_code:  # Ctrl-C, SIGTERM or an agent error: scripts and schedulers must see that it did not finish
        click.get_current_context().exit(loop.exit_code)


def _task_budget(root: Path) -> str:
    from autoresearch.task.store import workspace_task

    task = workspace_task(root)
    return f"{task.time_budget:g}s" if task.time_budget else f"fixed work (timeout {task.timeout:g}s)"


def is_task_workspace(root: Path) -> bool:
    from autoresearch.task.store import is_task_workspace as is_task

    return is_task(root)


def _resumed_options(root: Path, tag: str | None, given: RunOptions,
                     more: int | None = None) -> tuple[str, RunOptions, list[str]]:
    """The run to resume and the options it goes on with: its own, except those given again on this command line;
    `more`: experiments to add to those it finished."""
    from click.core import ParameterSource

    from autoresearch.loop.core import open_journal
    from autoresearch.loop.options import PARAMETERS, merge, more_experiments, summary

    journal = open_journal(root)
    try:
        run = journal.run(tag) if tag else (journal.runs() or [None])[-1]
        if run is None:
            raise click.ClickException(f"nothing to resume: no run tagged {tag!r} (see `autoresearch status --all`)"
                                       if tag else "nothing to resume: this workspace has no runs yet (start one "
                                       "without --resume)")
        sessions = journal.sessions(run.tag)
        finished = len(journal.final_attempts(run.tag))
    finally:
        journal.close()
    ctx = click.get_current_context()
    explicit = {name for name, param in PARAMETERS.items()
                if ctx.get_parameter_source(param) not in (None, ParameterSource.DEFAULT)}
    if sessions:
        stored, older = sessions[-1].options, ""
    else:  # a run from before sessions were recorded: its agent and policy are in the journal, its limits are not
        stored, older = {"agent": run.agent, "policy": run.policy}, " (its limits were not recorded: give them again)"
    options, changed = merge(stored, given, explicit)
    notes = [f"resume: run {run.tag} goes on with {summary(options)}{older}"]
    notes += [f"resume: using {c}" for c in changed]
    if more is not None:
        options, note = more_experiments(options, finished, more)
        notes.append(note)
    return run.tag, options, notes


def _checked_agent(root: Path, settings: Settings, cache: Path, agent_spec: str, *, seed: int, base_url: str | None,
                   prices_file: Path | None, agent_timeout: float | None, agent_sandbox: bool = True,
                   sampler: str = "tpe", tag: str | None = None, hidden: tuple[Path, ...] = ()):
    """Everything that can fail before any training, in seconds: the prepared data, the agent's package,
    credentials and executable. Nothing here imports torch, so a typo costs seconds, not a baseline."""
    from autoresearch.agents import AgentError, make_agent
    from autoresearch.paths import prepared_dir

    from autoresearch.task.store import is_task_workspace

    if not is_task_workspace(root) and not (prepared_dir(settings, cache) / "meta.json").exists():
        raise click.ClickException(f"the data of dataset {settings.dataset!r} is not prepared yet: run "
                                   "`autoresearch prepare` in the workspace first")
    prices = None
    if prices_file:
        from autoresearch.agents.pricing import PriceFileError, load_prices

        try:
            prices = load_prices(prices_file)
        except PriceFileError as e:
            raise click.ClickException(str(e)) from e
    try:
        agent = make_agent(agent_spec, seed=seed, base_url=base_url, prices=prices, agent_timeout=agent_timeout,
                           agent_sandbox=agent_sandbox, cache_dir=cache, sampler=sampler, workspace=root, tag=tag,
                           hidden=hidden)
        check = getattr(agent, "check", None)
        if check:
            check(root)
    except AgentError as e:
        raise click.ClickException(str(e)) from e
    return agent


