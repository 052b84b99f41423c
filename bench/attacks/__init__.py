"""The attack catalogue: hostile or broken variants of the template train.py, one module each.

An agent optimising one number will find every way to move it that is not real progress. Each module here is one
such way, written as an agent would write it: a small edit of the template (as `init` writes it, with a profile's
constants). A module defines

    NAME         the attack's name (the module's name)
    DESCRIPTION  one line
    apply(src)   the edit, applied to the template text; it asserts its anchors exist, so a template change can
                 never silently turn an attack into a no-op
    EXPECT       the outcomes that count as handled when the attack goes through the real loop (static check
                 included): {"rejected"}, {"crash"}, {"timeout"}, {"nan"}, {"oom"}; "ok" means neutralised: it
                 runs and is scored, but the harness measured exactly the baseline's bytes and tokens
    STATIC       whether the loop's static check (ast.parse + guard.check_source) rejects it before it runs
    RUNTIME      the outcomes that count as handled with the static check bypassed (defence in depth); None
                 where the run-time layers do not stop it (a known gap, explained in GAP). Default: EXPECT.
    REASON       optional regex the journal's reason must match (caught for the right reason)
    RUNTIME_LAYER   which run-time layer stops it (python, runner: ..., harness: ..., sandbox: ...); None: none
    RUNTIME_REASON  optional regex the run's reason or error tail must match when the run-time layer stops it
    OPEN         optional: the attack works today (a known hole, found by the red team); EXPECT is what a fix should
                 give, and tests/test_attacks.py marks it xfail(strict) until then (tests/test_redteam.py shows it)
    CHANCE       optional: the attack is caught by chance (probes drawn from the OS), with about this probability per
                 run; tests/test_attacks.py leaves it out (one draw proves nothing) and tests/test_evaluate.py
                 measures the probes' power over many draws; bench/attacks.py runs it like any other
    AGENT        instead of apply(): the program of a command agent (Python, run as `cmd:` with the dashboard's port
                 as its argument, confined as the loop confines agents) that edits train.py itself; the attack is
                 handled when its proposal and description carry no held-out (test) figure. EXPECT may be {"ok"}
    LEAK(memory_gb, error_tail)  optional: the held-out figure an agent would read from what the records show it of
                 the run (None: none); handled when it is not within _heldout.LEAK_TOLERANCE of the run's test_bpb
    TASK         optional: the attack is an edit of examples/TASK/train.py, not of the GPT template; it runs
                 through the task loop (tests/test_task_attacks.py), never through the GPT runners
    FORGED       optional (task attacks): the figure the attack scores if it works; handled when the recorded
                 metric is not it. EXPECT may then be {"ok"} (neutralised: scored, by the evaluator, honestly)
    PROTECT_RUNS optional (task attacks): handled only when no file of an earlier run changed
    CARELESS_EVALUATOR(text)  optional (task attacks): the attack runs against this variant of the example's
                 evaluate.py; INIT_WARNING, a regex `init --task` must print about it
    CANARIES     paths outside the workspace the attack tries to create: they must not exist afterwards
    PROTECTED    existing files outside the workspace the attack tries to change: they must stay as they were
    LEFTOVERS    glob patterns, relative to the workspace, of files the attack leaves for the next run (weights in
                 a cache): nothing may match them afterwards

`bench/attacks.py` runs the catalogue through the real loop and prints a table; tests/test_attacks.py runs it
on tiny budgets.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

OUTCOMES = frozenset({"ok", "crash", "timeout", "nan", "oom", "rejected"})


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    apply: Callable[[str], str] | None
    expect: frozenset[str]
    static: bool
    runtime: frozenset[str] | None
    reason: str = ""
    runtime_layer: str | None = None
    runtime_reason: str = ""
    gap: str = ""
    canaries: tuple[str, ...] = ()
    protected: tuple[str, ...] = field(default=())
    leftovers: tuple[str, ...] = ()
    limits: dict = field(default_factory=dict)  # settings the attack must run under to be measurable (LIMITS)
    open: str = ""  # why it works today (OPEN): a hole not fixed yet
    chance: float | None = None  # caught by chance, with about this probability per run (CHANCE)
    agent: str = ""  # a command agent's program (AGENT) instead of an edit
    leak: Callable[[float, str], float | None] | None = None  # the held-out figure an agent reads (LEAK)
    task: str = ""  # examples/TASK/train.py is what it edits (TASK); empty: the GPT template
    forged: float | None = None  # the figure it scores if it works (FORGED)
    protect_runs: bool = False  # earlier runs' files must stay as they were (PROTECT_RUNS)
    careless_evaluator: Callable[[str], str] | None = None  # the evaluator it runs against (CARELESS_EVALUATOR)
    init_warning: str = ""  # what init --task must say of that evaluator (INIT_WARNING)

    def source(self, template: str) -> str:
        assert self.apply is not None, f"attack {self.name} is a command agent's (AGENT), not an edit"
        out = self.apply(template)
        assert out != template, f"attack {self.name} did not change the template"
        return out


def catalogue(tasks: bool = False) -> list[Attack]:
    """Every attack module of this package on the GPT template, in name order (tasks=True: the task attacks)."""
    attacks = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        m = importlib.import_module(f"{__name__}.{info.name}")
        expect = frozenset(m.EXPECT)
        runtime = getattr(m, "RUNTIME", expect)
        attack = Attack(name=m.NAME, description=m.DESCRIPTION, apply=getattr(m, "apply", None), expect=expect,
                        static=m.STATIC, agent=getattr(m, "AGENT", ""),
                        runtime=None if runtime is None else frozenset(runtime), reason=getattr(m, "REASON", ""),
                        runtime_layer=getattr(m, "RUNTIME_LAYER", None),
                        runtime_reason=getattr(m, "RUNTIME_REASON", ""), gap=getattr(m, "GAP", ""),
                        canaries=tuple(getattr(m, "CANARIES", ())), protected=tuple(getattr(m, "PROTECTED", ())),
                        leftovers=tuple(getattr(m, "LEFTOVERS", ())),
                        limits=dict(getattr(m, "LIMITS", {})), open=getattr(m, "OPEN", ""),
                        chance=getattr(m, "CHANCE", None), leak=getattr(m, "LEAK", None),
                        task=getattr(m, "TASK", ""), forged=getattr(m, "FORGED", None),
                        protect_runs=getattr(m, "PROTECT_RUNS", False),
                        careless_evaluator=getattr(m, "CARELESS_EVALUATOR", None),
                        init_warning=getattr(m, "INIT_WARNING", ""))
        assert attack.name == info.name, f"{info.name}.py: NAME must be the module's name"
        assert attack.expect and attack.expect <= OUTCOMES and (attack.expect != {"ok"} or attack.agent
                                                                  or attack.forged is not None), \
            f"{attack.name}: bad EXPECT"
        assert (attack.apply is None) == bool(attack.agent), f"{attack.name}: apply() or AGENT, one of them"
        assert attack.runtime is not None or attack.gap, f"{attack.name}: RUNTIME = None needs a GAP explanation"
        if bool(attack.task) == tasks:
            attacks.append(attack)
    return attacks


def template_source(profile: str = "cpu", **constants) -> str:
    """The template train.py as `init` writes it for `profile`, with optional further constants."""
    from autoresearch.settings import PROFILES
    from autoresearch.workspace import set_constants, template_text

    return set_constants(template_text("train.py"), {**PROFILES[profile].train_constants, **constants})
