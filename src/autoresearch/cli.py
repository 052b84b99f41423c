"""The `autoresearch` command line. The only place that turns errors into messages and exit codes."""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime
from pathlib import Path

import click

from autoresearch.loop.options import DEFAULTS, RunOptions, default_tag
from autoresearch.settings import CACHE_ENV, PROFILES, SETTINGS_FILE, WORKSPACE_ENV, Settings, SettingsError, cache_dir


def friendly_errors(fn):
    """Known failures become one clear line and exit code 1; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from autoresearch.data.sources import DataError
        from autoresearch.loop.vcs import VcsError
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
@friendly_errors
def init(directory: Path, profile: str | None, dataset: str, time_budget: float | None, token_budget: int | None,
         startup_limit: float | None, vocab_size: int | None, max_seq_len: int | None,
         eval_tokens: int | None) -> None:
    """Create a research workspace in DIRECTORY: a git repo with train.py, program.md and autoresearch.toml."""
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


@cli.command()
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
    cache = _cache(cache_dir)
    report = run_prepare(settings, cache, progress=click.echo, workers=workers)
    click.echo(f"prepared {settings.dataset!r} in {report.seconds:.1f}s -> {report.directory}")
    click.echo(f"evaluation: {report.eval_rows['val']} rows of {settings.max_seq_len} tokens (val and test)")
    for split, floor in report.floor_bpb.items():
        click.echo(f"entropy floor ({split}): {floor:.4f} bits per byte (no model can score lower)")
    fetch_attention_kernel(progress=click.echo, force=fetch_kernels)


def _settings_for_prepare(workspace, dataset, profile, vocab_size, train_shards, tokenizer_chars) -> Settings:

    try:
        root = _workspace_root(workspace)
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
    from autoresearch.data.sources import check_dataset
    from autoresearch.loop import vcs
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


def _workspace_root(workspace: Path | None) -> Path:
    from autoresearch.paths import find_workspace

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
@click.option("--timeout", type=float, help="Also kill the run after this many seconds in all (default: none; "
              "start-up, training and evaluation each have their own limit).")
@friendly_errors
def train(workspace: Path | None, cache_dir: Path | None, timeout: float | None) -> None:
    """Run the workspace's train.py once, show its progress, and print the harness's official result."""
    from autoresearch.harness.constants import prepared_dir
    from autoresearch.run.compile_cache import SEED_DIR
    from autoresearch.run.supervisor import Experiment, protect_orchestrator, run_experiment
    from autoresearch.see.ui import RunView

    root = _workspace_root(workspace)
    settings = Settings.load(root / SETTINGS_FILE)
    cache = _cache(cache_dir)
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
    if not result.ok:
        click.echo(result.error_tail, err=True)
        raise click.ClickException(f"run {result.status}: {result.reason}")
    test = f"{result.test_bpb:.6f} (held out)" if result.test_bpb is not None else "not scored"
    click.echo(f"official (harness): val_bpb {result.val_bpb:.6f} | test_bpb {test} | {result.wall_seconds:.1f}s wall")
    click.echo(f"clock (runner): start-up {_secs(result.startup_seconds)} | training {_secs(result.training_seconds)}"
               f" | evaluation {_secs(result.eval_seconds)} | {result.steps or 0} steps, "
               f"{result.train_tokens or 0:,} training tokens"
               + (f" at {result.tokens_per_second:,.0f} tokens/s" if result.tokens_per_second else ""))


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}s"


@cli.command()
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
@friendly_errors
def run(workspace: Path | None, cache_dir: Path | None, tag: str | None, resume: bool,
        agent_spec: tuple[str, ...], base_url: str | None, prices_file: Path | None,
        max_experiments: int | None, max_hours: float | None, max_cost: float | None, fix_attempts: int,
        timeout: float | None, agent_timeout: float | None,
        agent_sandbox: bool, policy: str, noise_runs: int, sigmas: float, confirm_runs: int, seed: int, sampler: str,
        workers: int | None, per_device: int, backend: str, address: str | None) -> None:
    """Run the research loop: the agent proposes, the harness judges, git keeps the winners.

    The first experiment is the unchanged baseline. Each later one: the agent edits train.py, the loop checks
    and commits it, trains for the time budget, keeps the commit if val_bpb improved and resets the branch
    otherwise. Records go to results.tsv and the journal (.autoresearch/journal.db). Ctrl-C stops cleanly (exit
    status 130); `--resume` continues after any stop, even a crash of this process.
    """
    from autoresearch.loop.options import OptionsError

    try:  # first: a limit no run can use must not create a run, a branch or a results file
        given = RunOptions(agent=agent_spec, base_url=base_url, prices=str(prices_file.resolve()) if prices_file
                           else None, seed=seed, sampler=sampler, agent_timeout=agent_timeout, policy=policy,
                           sigmas=sigmas, noise_runs=noise_runs, confirm_runs=confirm_runs, fix_attempts=fix_attempts,
                           timeout=timeout, max_experiments=max_experiments, max_hours=max_hours, max_cost=max_cost,
                           workers=workers, per_device=per_device, backend=backend, address=address)
    except OptionsError as e:
        raise click.UsageError(str(e)) from e
    root = _workspace_root(workspace)
    settings = Settings.load(root / SETTINGS_FILE)
    cache = _cache(cache_dir)
    options, notes = given, []
    if resume:
        tag, options, notes = _resumed_options(root, tag, given)
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
                             sampler=options.sampler, tag=tag)
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
    click.echo(f"run {tag} on branch autoresearch/{tag} | agent {names} | {settings.budget_label} per experiment"
               f"{places}")
    for note in notes:
        click.echo(note)
    with LoopView(loop.journal, tag, names, vocab=settings.vocab_size) as view:
        loop.view = view
        reason = loop.run_until_limit()
    records = loop.journal.final_attempts(tag)
    run_record = loop.journal.run(tag)
    wide_console().print(status_table(records, title=f"run {tag}"))
    click.echo(summary_line(records, loop.journal.totals(tag), run_record, loop.journal.sessions(tag)))
    click.echo(f"stopped: {reason}")
    loop.journal.close()
    if loop.exit_code:  # Ctrl-C, SIGTERM or an agent error: scripts and schedulers must see that it did not finish
        click.get_current_context().exit(loop.exit_code)


def _resumed_options(root: Path, tag: str | None, given: RunOptions) -> tuple[str, RunOptions, list[str]]:
    """The run to resume and the options it goes on with: its own, except those given again on this command line."""
    from click.core import ParameterSource

    from autoresearch.loop.core import open_journal
    from autoresearch.loop.options import PARAMETERS, merge, summary

    journal = open_journal(root)
    try:
        run = journal.run(tag) if tag else (journal.runs() or [None])[-1]
        if run is None:
            raise click.ClickException(f"nothing to resume: no run tagged {tag!r} (see `autoresearch status --all`)"
                                       if tag else "nothing to resume: this workspace has no runs yet (start one "
                                       "without --resume)")
        sessions = journal.sessions(run.tag)
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
    return run.tag, options, notes


def _checked_agent(root: Path, settings: Settings, cache: Path, agent_spec: str, *, seed: int, base_url: str | None,
                   prices_file: Path | None, agent_timeout: float | None, agent_sandbox: bool = True,
                   sampler: str = "tpe", tag: str | None = None):
    """Everything that can fail before any training, in seconds: the prepared data, the agent's package,
    credentials and executable. Nothing here imports torch, so a typo costs seconds, not a baseline."""
    from autoresearch.agents import AgentError, make_agent
    from autoresearch.paths import prepared_dir

    if not (prepared_dir(settings, cache) / "meta.json").exists():
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
                           agent_sandbox=agent_sandbox, cache_dir=cache, sampler=sampler, workspace=root, tag=tag)
        check = getattr(agent, "check", None)
        if check:
            check(root)
    except AgentError as e:
        raise click.ClickException(str(e)) from e
    return agent


@cli.command()
@workspace_option
@click.option("--tag", help="The run to show (default: the latest).")
@click.option("--all", "all_runs", is_flag=True, help="List every run of the workspace.")
@friendly_errors
def status(workspace: Path | None, tag: str | None, all_runs: bool) -> None:
    """Print the table of experiments of a run and the best result so far."""
    # Only the journal: nothing here may import the loop or the harness (torch takes seconds to import).
    from autoresearch.loop.journal import Journal
    from autoresearch.see.facts import as_seen, journal_path
    from autoresearch.see.ui import status_table, summary_line, wide_console

    root = _workspace_root(workspace)
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
    wide_console().print(status_table(records, title=f"run {run.tag} ({run.branch}, agent {run.agent}, {run.state})"))
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


@cli.command()
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

    root = _workspace_root(workspace)
    files = write_report(root, out=out.expanduser().resolve() if out else None, tag=tag, cache=_cache(cache_dir))
    click.echo(f"plot:   {files.png}")
    click.echo(f"report: {files.html}")


@cli.command()
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

    root = _workspace_root(workspace)
    try:
        server = serve(root, host=host, port=port, tag=tag, cache=_cache(cache_dir))
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


# The studies of a finished run (ablate, transfer) register on the same group, from a module of their own.
from autoresearch import cli_studies  # noqa: E402, F401


def main() -> None:
    cli(prog_name="autoresearch")


if __name__ == "__main__":  # python -m autoresearch.cli: the group as imported, with the studies registered on it
    from autoresearch.cli import main as registered

    sys.exit(registered())
