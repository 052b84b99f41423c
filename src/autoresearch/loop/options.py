"""How a run was started: the options `run --resume` restores, and the command line that resumes it.

Each session of a run (one `autoresearch run` process) records its options in the journal. A resume takes the
last session's options, except those the user passes again, and says which ones changed: a run started with
`anthropic:...` and `--max-experiments 6` goes on with that agent and stops at experiment 6, whoever resumes it.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path


class OptionsError(ValueError):
    """An option value no run can use; the message names the option and what it accepts."""


@dataclass(frozen=True)
class RunOptions:
    agent: tuple[str, ...] = ("search",)  # `--agent` may be repeated: the workers take the agents in turn
    base_url: str | None = None
    prices: str | None = None  # the price table's path
    seed: int = 0
    sampler: str = "tpe"  # the search agent's Optuna sampler: tpe | cmaes | random
    agent_timeout: float | None = None
    policy: str = "noise"
    sigmas: float = 2.0
    noise_runs: int = 2
    confirm_runs: int = 1
    fix_attempts: int = 2
    timeout: float | None = None
    max_experiments: int | None = None
    max_hours: float | None = None
    max_cost: float | None = None
    workers: int | None = None  # None: one per visible GPU, 1 on CPU and MPS (backends/local.py)
    per_device: int = 1
    backend: str = "local"
    address: str | None = None  # of the Ray cluster (else RAY_ADDRESS)
    track: tuple[str, ...] = ()  # trackers logged to live (see/track/): mlflow, wandb, tensorboard

    def __post_init__(self) -> None:
        if isinstance(self.agent, str):  # a session recorded before agents could be repeated
            object.__setattr__(self, "agent", (self.agent,))
        else:
            object.__setattr__(self, "agent", tuple(self.agent))
        object.__setattr__(self, "track", tuple(self.track))
        if not self.agent:
            raise OptionsError("--agent: give at least one agent")
        if self.sampler not in ("tpe", "cmaes", "random"):
            raise OptionsError(f"--sampler must be tpe, cmaes or random, not {self.sampler!r}")
        if self.workers is not None and self.workers < 1:
            raise OptionsError(f"--workers must be at least 1, not {self.workers}")
        if self.per_device < 1:
            raise OptionsError(f"--per-device must be at least 1, not {self.per_device}")
        check_positive("--max-hours", self.max_hours)
        check_positive("--max-cost", self.max_cost)
        check_positive("--timeout", self.timeout)
        check_positive("--agent-timeout", self.agent_timeout)
        if self.max_experiments is not None and self.max_experiments < 1:
            raise OptionsError(f"--max-experiments must be at least 1, not {self.max_experiments}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunOptions:
        """Options as a session recorded them; keys a newer autoresearch added are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_tag() -> str:
    return datetime.now().strftime("%b%d").lower()  # e.g. nov21, as the original names its branches


def check_positive(flag: str, value: float | None) -> None:
    """A limit in hours, USD or seconds: a positive number. A zero or negative one would create a run that does
    nothing; NaN would silently be no limit at all."""
    if value is not None and (math.isnan(value) or value <= 0):
        raise OptionsError(f"{flag} must be a positive number, not {value:g}; leave it out for no limit")


DEFAULTS = RunOptions()
PARAMETERS = {f.name: {"agent": "agent_spec", "prices": "prices_file"}.get(f.name, f.name)
              for f in fields(RunOptions)}  # each option's name among the `run` command's parameters


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def merge(stored: dict, given: RunOptions, explicit: set[str]) -> tuple[RunOptions, list[str]]:
    """The options of a resumed run: the stored ones, except those in `explicit` (the user passed them again).

    Returns them with one note per option whose value changed, so the user sees what differs from before.
    """
    before = RunOptions.from_dict(stored)
    values = before.to_dict()
    notes = []
    for name in sorted(explicit & values.keys()):
        new = getattr(given, name)
        if new != values[name]:
            notes.append(f"{flag(name)} {_show(new)} (the run had {_show(values[name])})")
            values[name] = new
    return RunOptions(**values), notes


def more_experiments(o: RunOptions, finished: int, more: int) -> tuple[RunOptions, str]:
    """`run --resume --more N`: the run's --max-experiments becomes what it finished plus N (an experiment left
    unfinished is among the N). Recorded so, a later resume stops at the same total."""
    total = finished + more
    return replace(o, max_experiments=total), f"resume: --more {more}: --max-experiments {total} ({finished} finished)"


def summary(o: RunOptions) -> str:
    """The options of a run in a few words: the agent, the policy and the limits."""
    policy = f"policy {o.policy}" + (f" ({o.sigmas:g} sd, {o.noise_runs} noise runs)" if o.policy == "noise" else "")
    limits = [f"{flag(name)} {_show(getattr(o, name))}" for name in ("max_experiments", "max_hours", "max_cost")
              if getattr(o, name) is not None]
    agents = f"agent{'s' if len(o.agent) > 1 else ''} {', '.join(o.agent)}"
    workers = [f"{o.workers} workers"] if o.workers and o.workers > 1 else []
    return ", ".join([agents, *workers, policy, *(limits or ["no limit"])])


def resume_command(tag: str, options: RunOptions | None = None) -> str:
    """The command that continues the run. It lists the run's options explicitly, though `--resume` restores them:
    the line then means the same to a reader, and to an older autoresearch."""
    parts = ["autoresearch", "run", "--resume", "--tag", tag]
    if options is not None:
        for f in fields(options):
            value = getattr(options, f.name)
            if value != getattr(DEFAULTS, f.name) and value is not None:
                for one in value if isinstance(value, tuple) else (value,):
                    parts += [flag(f.name), _show(one)]
    return shlex.join(parts)


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)  # 8 and 0.5, but 12.345678 whole
    return str(value)


# -- what the loop is given -----------------------------------------------------------------------------------------

@dataclass
class Limits:
    max_experiments: int | None = None  # total experiments of the run, earlier sessions included
    max_hours: float | None = None  # wall-clock hours of this session
    max_cost: float | None = None  # USD of agent usage over the whole run


@dataclass
class LoopConfig:
    tag: str
    agent: tuple[str, ...] | str = ("search",)
    policy: str = "noise"
    sigmas: float = 2.0  # noise policy: margin in standard deviations
    noise_runs: int = 2  # noise policy: extra baseline runs with other seeds
    confirm_runs: int = 1  # noise policy: extra runs of a marginal winner
    resume: bool = False
    limits: Limits = field(default_factory=Limits)
    fix_attempts: int = 2  # follow-up attempts an agent gets to repair its own crashed change
    timeout: float | None = None  # per experiment, on top of the runner's phase limits (None: phase limits only)
    cache: Path | None = None
    agent_options: dict = field(default_factory=dict)  # how the agent was built (seed, base_url...): for --resume
    workers: int | None = None  # None: the backend's default (one per visible GPU; 1 on CPU and MPS)
    per_device: int = 1  # workers sharing one GPU
    backend: str = "local"  # local | ray
    address: str | None = None  # the Ray cluster's
    track: tuple[str, ...] = ()  # recorded for --resume; the `run` command does the logging, not the loop

    @classmethod
    def from_options(cls, tag: str, o: RunOptions, resume: bool = False, cache: Path | None = None) -> LoopConfig:
        return cls(tag=tag, agent=o.agent, policy=o.policy, sigmas=o.sigmas, noise_runs=o.noise_runs,
                   confirm_runs=o.confirm_runs, resume=resume, fix_attempts=o.fix_attempts, timeout=o.timeout,
                   cache=cache, limits=Limits(o.max_experiments, o.max_hours, o.max_cost), workers=o.workers,
                   per_device=o.per_device, backend=o.backend, address=o.address, track=o.track,
                   agent_options={"base_url": o.base_url, "prices": o.prices, "seed": o.seed,
                                  "sampler": o.sampler, "agent_timeout": o.agent_timeout})

    def options(self) -> RunOptions:
        """What this session records for a later --resume (raises OptionsError for a limit no run can use)."""
        lim = self.limits
        return RunOptions(agent=self.agent, policy=self.policy, sigmas=self.sigmas, noise_runs=self.noise_runs,
                          confirm_runs=self.confirm_runs, fix_attempts=self.fix_attempts, timeout=self.timeout,
                          max_experiments=lim.max_experiments, max_hours=lim.max_hours, max_cost=lim.max_cost,
                          workers=self.workers, per_device=self.per_device, backend=self.backend,
                          address=self.address, track=self.track, **self.agent_options)
