"""The one small interface every agent implements, and what it is given.

An agent reads the context and returns a proposal: the complete new train.py, the complete text of any other
editable file of a task it changes (`files`), and a one-line description (plus its reasoning and what it cost).
It never runs experiments and never touches git; the loop does both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


class AgentError(Exception):
    """The agent could not produce a proposal. `fatal` means retrying will not help (missing command, bad key).

    `transient` means it passes by itself (a provider's outage or rate limit, a timeout): the loop waits it out
    however often it comes. Any other error that repeats word for word stops the run after a few rounds.
    `usage` is what the failed attempt still cost (tokens of replies that could not be used), for the journal.
    """

    def __init__(self, message: str, fatal: bool = False, usage: Usage | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.transient = transient
        self.usage = usage if usage is not None else Usage()


@dataclass(frozen=True)
class HistoryEntry:
    """One past experiment as an agent may see it (never the held-out test figure)."""

    number: int
    status: str  # keep | discard | crash | rejected
    description: str
    val_bpb: float | None = None
    memory_gb: float | None = None
    reason: str = ""  # for crash/rejected: why
    diff: str = ""  # the change relative to the best train.py at the time (may be abbreviated)
    train_py: str = ""  # the complete source that was tried (agents that search need it; prompts use the diff)
    agent: str = ""  # who proposed it (a hybrid agent's part: the LLM or the tuner)
    files: dict[str, str] = field(default_factory=dict)  # a task's other editable files as tried (see Context.files)


@dataclass(frozen=True)
class Failure:
    """The last attempt of the current idea failed: what was tried and how it broke."""

    description: str
    status: str
    reason: str
    error_tail: str
    train_py: str
    files: dict[str, str] = field(default_factory=dict)  # the other editable files of the failed attempt


@dataclass(frozen=True)
class InFlight:
    """An experiment another worker is running right now: proposing the same idea again would waste a run."""

    number: int
    description: str
    diff: str = ""  # its change relative to the best it started from
    train_py: str = ""
    agent: str = ""
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    program: str  # program.md: the human's instructions
    train_py: str  # the current best train.py, to be changed
    harness_surface: str  # what train.py may import from autoresearch.harness, as text
    history: tuple[HistoryEntry, ...] = ()
    best_val_bpb: float | None = None
    time_budget: float = 300.0
    token_budget: int | None = None  # training tokens per experiment, when the workspace sets one (then time caps)
    failure: Failure | None = None  # set when the agent is asked to fix its own crashed change
    workspace: Path | None = None  # command agents edit workspace/train.py in place
    experiment: int = 0  # number of the experiment being proposed
    max_seq_len: int | None = None  # tokens per row (workspace setting); None: agents keep batch ratios as they are
    in_flight: tuple[InFlight, ...] = ()  # what the other workers are trying now (never proposed again)
    noise_sd: float | None = None  # run-to-run spread of val_bpb measured on the baseline (noise policy)
    notes: str = ""  # what another part of a hybrid agent learned (agents/hybrid.py), shown in the prompt
    # The figure the run is judged on and its direction: the GPT task's val_bpb, or a task's own (task.toml). The
    # field names above (best_val_bpb, HistoryEntry.val_bpb) hold that figure either way.
    metric: str = "val_bpb"
    goal: str = "minimize"
    task: str = ""  # a task's name (init --task); "" for the GPT task
    # timeout, fixed work: a task without a time budget (the script decides its work; `timeout` caps it)
    fixed_work: bool = False
    # A task's editable files other than train.py, path -> complete text, as the best has them ({} for the GPT
    # task, whose only editable file is train.py). A proposal may change any of them (Proposal.files).
    files: dict[str, str] = field(default_factory=dict)

    @property
    def sign(self) -> int:
        """+1 when lower is better, -1 when higher is."""
        return -1 if self.goal == "maximize" else 1

    @property
    def direction(self) -> str:
        return "higher is better" if self.sign < 0 else "lower is better"


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.cost_usd + other.cost_usd)


@dataclass
class Proposal:
    train_py: str
    description: str
    rationale: str = ""
    usage: Usage = field(default_factory=Usage)
    by: str = ""  # which agent proposed it, when an agent is made of parts (the hybrid); else the agent's name
    # The other editable files of a task it changes, path -> complete new text; a file not named stays as the best
    # has it. Only files the task declares editable may be named (any other is refused with the reason).
    files: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    name: str

    def propose(self, ctx: Context) -> Proposal: ...
