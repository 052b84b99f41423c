"""The built-in `search` agent: no model, no network; Optuna tunes train.py's CAPS constants through ask and tell.

In a task whose `editable` lists more Python files, their CAPS constants are tuned too, named `path:NAME`
(`model.py:WIDTH` beside train.py's `LR`); train.py's keep their bare names, so a train.py-only space, its study
and its settings' keys are what they always were.

The space (types, ranges, invariants) is `space.py`; the sampler is Optuna's: TPE by default, CMA-ES or random
search on request. The study lives in the workspace (`.autoresearch/search.db`, next to the journal), one per run,
so `--resume` continues it and the workers of a run share it. The journal stays the record: before each ask the
agent tells the study every finished experiment it has not been told (its own trials by their setting, the
baseline and other agents' changes as trials of their own where they fit the space). A keep or a discard tells
its figure (val_bpb, or a task's metric, negated where higher is better: the study minimizes; with repeats, the
mean over seeds, the policy's figure); a crash or a rejection is a failed trial.
A setting that ran, runs now on another worker, or is the best is never proposed again. TPE's first proposals
change one or two constants of the best (Optuna's PartialFixedSampler holds the rest), more as trials finish: a
model of a handful of trials draws nearly at random over the whole space, and those draws are poor bets.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import threading
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import BaseSampler, CmaEsSampler, PartialFixedSampler, RandomSampler, TPESampler
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from autoresearch.agents.base import AgentError, Context, Proposal, Usage
from autoresearch.agents.space import IMPORTANCE, Space, show, spell, spellings
from autoresearch.workspace import RUN_DIR, Code, constants_of, set_constants

SAMPLERS = ("tpe", "cmaes", "random")
STORE = "search.db"  # in the workspace's RUN_DIR, next to the journal
FEW_EVERY = 3  # a TPE proposal may change one more constant for every this many finished trials
SAMPLER_ASKS = 20  # asks of the study's sampler before a proposal falls back to random points (all were taken)
RANDOM_ASKS = 200  # random points tried before the space counts as exhausted
ENTRY, KEY = "entry", "setting"  # trial user attributes: the journal entry told, the setting's key

optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial would scroll the live view away

# One storage per database and one lock for all agents of this process: the workers' agents share the study, and
# a setting asked by one must be visible to the next before either is recorded in the journal.
_LOCK = threading.Lock()
_STORAGES: dict[str, BaseStorage] = {}
_ASKED: dict[tuple[str, str], set[int]] = {}  # trials this process asked; others still RUNNING were abandoned
_MEMORY = itertools.count()  # an agent without a workspace gets a study of its own (id() is reused after a gc)


def setting_key(source: str, files: dict[str, str] | None = None) -> str:
    consts = constants_of(source, files)
    return hashlib.sha1(repr(sorted((k, repr(v)) for k, v in consts.items())).encode()).hexdigest()[:16]


def _entry(e) -> str:
    """The journal entry told to the study; train.py's digest alone where no other file is recorded (as always)."""
    files = "".join(f"\0{p}\0{t}" for p, t in sorted(e.files.items()))
    return f"{e.number}:{_digest(e.train_py + files)}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _storage(url: str) -> BaseStorage:
    if url not in _STORAGES:
        # sqlite waits for a lock held by another process (a second session on the workspace) instead of failing
        _STORAGES[url] = (InMemoryStorage() if url.startswith("memory:")
                          else RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}))
    return _STORAGES[url]


def _value(status: str, val_bpb: float | None) -> float | None:
    """What a finished experiment tells the study: its figure, or None for a failed trial."""
    if status in ("keep", "discard") and val_bpb is not None and math.isfinite(val_bpb):
        return val_bpb
    return None


class SearchAgent:
    """Hyperparameter search over the CAPS constants of the best train.py, with an Optuna sampler."""

    name = "search"
    can_fix = False  # a crash is a failed trial: the next experiment asks the study again

    def __init__(self, seed: int = 0, sampler: str = "tpe", workspace: Path | None = None, tag: str | None = None,
                 storage: str | None = None) -> None:
        if sampler not in SAMPLERS:
            raise AgentError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}", fatal=True)
        self.seed, self.sampler, self.workspace, self.tag, self.storage = seed, sampler, workspace, tag, storage
        self._memory = f"memory:{next(_MEMORY)}"
        self._study: optuna.Study | None = None
        self._random: optuna.Study | None = None

    # -- the study --------------------------------------------------------------------------------------------

    def _url(self, ctx: Context) -> str:
        if self.storage:
            return self.storage
        root = self.workspace
        if root is None and ctx.workspace is not None:
            from autoresearch.agents.command import main_checkout

            root = main_checkout(ctx.workspace)  # a worker's worktree belongs to the workspace
        if root is None:
            return self._memory
        (root / RUN_DIR).mkdir(exist_ok=True)
        return f"sqlite:///{(root / RUN_DIR / STORE).resolve()}"

    def _make_sampler(self, space: Space, x0: dict[str, Any] | None) -> BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental and deprecation notes of Optuna's samplers
            # TPE models from the first finished trial (the baseline) on: its default start-up phase would spend the
            # first ten experiments on random points.
            tpe = TPESampler(seed=self.seed, n_startup_trials=1, multivariate=True, constant_liar=True,
                             warn_independent_sampling=False)
            if self.sampler == "tpe":
                return tpe
            if self.sampler == "random":
                return RandomSampler(seed=self.seed)
            numeric = {k: v for k, v in (x0 or {}).items()
                       if not isinstance(space.distributions[k], optuna.distributions.CategoricalDistribution)}
            # CMA-ES moves the numbers from the starting train.py; it cannot sample categories, TPE does those.
            return CmaEsSampler(seed=self.seed, x0=numeric or None, n_startup_trials=1, independent_sampler=tpe,
                                warn_independent_sampling=False)

    def study(self, ctx: Context) -> tuple[optuna.Study, Space]:
        if self._study is None:
            url = self._url(ctx)
            self._storage = _storage(url)
            first = min((e for e in ctx.history if e.train_py), key=lambda e: e.number, default=None)
            start, start_files = (first.train_py, first.files) if first else (ctx.train_py, ctx.files)
            study = optuna.create_study(storage=self._storage, study_name=self.tag or f"search-{_digest(start)}",
                                        direction="minimize", load_if_exists=True)
            if "space" not in study.user_attrs:  # a new run: the space is centred on the train.py it starts from
                consts = constants_of(start, start_files)
                space = Space.around(consts)
                study.set_user_attr("space", space.to_json())
                study.set_user_attr("x0", space.params(consts))
            self._space = Space.from_json(study.user_attrs["space"])
            self._sampler = study.sampler = self._make_sampler(self._space, study.user_attrs.get("x0"))
            self._study = study
            self._asked = _ASKED.setdefault((url, study.study_name), set())
        return self._study, self._space

    def _few(self, space: Space, best: dict[str, Any], finished: int, rng: random.Random) -> tuple[BaseSampler, int]:
        """TPE's sampler for one ask, and how many constants it may change. A model fitted to a handful of trials
        draws nearly at random over the whole space; changing a few constants of the best at a time (the more
        important ones more often) makes the first proposals good bets and their results legible. The rest stay
        at the best's values, and the number grows with the trials finished until TPE has the whole space."""
        dims = list(space.distributions)
        k = 1 + finished // FEW_EVERY
        fixable = {d: v for d, v in (space.params(best) or {}).items() if space.inside(d, v)}
        if self.sampler != "tpe" or k >= len(dims) or not fixable:
            return self._sampler, len(dims)
        free: set[str] = set(dims) - set(fixable)
        while len(free) < k:
            left = [d for d in dims if d not in free]
            free.add(rng.choices(left, weights=[IMPORTANCE.get(d, 1.0) for d in left])[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PartialFixedSampler is marked experimental
            return PartialFixedSampler({d: v for d, v in fixable.items() if d not in free}, self._sampler), len(free)

    def _random_view(self) -> optuna.Study:
        """The same study with a random sampler: for when the sampler keeps asking for settings already taken."""
        assert self._study is not None
        if self._random is None:
            self._random = optuna.load_study(study_name=self._study.study_name, storage=self._storage,
                                             sampler=RandomSampler(seed=self.seed))
        return self._random

    def tell(self, study: optuna.Study, space: Space, ctx: Context) -> None:
        """Tell the study every finished experiment it has not been told; fail its abandoned trials."""
        trials = study.get_trials(deepcopy=False)
        told = {t.user_attrs.get(ENTRY) for t in trials}
        running: dict[str, list[FrozenTrial]] = {}
        for t in trials:
            if t.state == TrialState.RUNNING:
                running.setdefault(t.user_attrs.get(KEY, ""), []).append(t)
        for e in sorted(ctx.history, key=lambda e: e.number):
            if not e.train_py:
                continue
            entry = _entry(e)
            if entry in told:
                continue
            told.add(entry)
            key, value = setting_key(e.train_py, e.files), _value(e.status, e.val_bpb)
            value = None if value is None else ctx.sign * value  # the study minimizes: a maximized metric, negated
            if running.get(key):  # a trial of this study (this agent or another worker's)
                trial = running[key].pop(0)
                self._storage.set_trial_user_attr(trial._trial_id, ENTRY, entry)
                if value is None:
                    study.tell(trial.number, state=TrialState.FAIL)
                else:
                    study.tell(trial.number, value)
                continue
            params = space.params(constants_of(e.train_py, e.files))
            if params is None:
                continue
            try:  # the baseline, or another agent's change: a trial of its own where it lies inside the space
                study.add_trial(create_trial(
                    params=params, distributions=space.distributions, value=value,
                    state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
                    user_attrs={ENTRY: entry, KEY: key}))
            except ValueError:
                pass  # outside the ranges
        flying = {setting_key(f.train_py, f.files) for f in ctx.in_flight if f.train_py}
        for key, left in running.items():
            for trial in left:
                if trial.number not in self._asked and key not in flying:  # asked by a session that stopped before
                    study.tell(trial.number, state=TrialState.FAIL)

    # -- proposing --------------------------------------------------------------------------------------------

    def propose(self, ctx: Context) -> Proposal:
        source, files = _best_source(ctx)
        best = constants_of(source, files)
        with _LOCK:
            study, space = self.study(ctx)
            if not space.distributions:
                raise AgentError("train.py (and any other editable Python file of the task) has no tunable CAPS "
                                 "constants (top-level `NAME = literal` lines such as `MATRIX_LR = 0.04`), so the "
                                 "search agent has nothing to change; restore them or use an LLM agent", fatal=True)
            self.tell(study, space, ctx)
            taken = {setting_key(source, files)} | {setting_key(e.train_py, e.files) for e in ctx.history if e.train_py}
            taken |= {setting_key(f.train_py, f.files) for f in ctx.in_flight if f.train_py}
            trials = study.get_trials(deepcopy=False)
            taken |= {t.user_attrs.get(KEY) for t in trials if t.state == TrialState.RUNNING}
            finished = [t for t in trials if t.state == TrialState.COMPLETE]
            rng = random.Random(f"autoresearch-search:{self.seed}:{len(trials)}")
            for i in range(SAMPLER_ASKS + RANDOM_ASKS):
                view = study if i < SAMPLER_ASKS else self._random_view()
                if i < SAMPLER_ASKS:
                    study.sampler, opened = self._few(space, best, len(finished), rng)
                trial = view.ask(space.distributions)
                new = space.constants(trial.params, best, ctx.max_seq_len)
                train_py, changed = _write(source, files, best, new) if new is not None else (None, {})
                key = setting_key(train_py, {**files, **changed}) if train_py else None
                if key is None or key in taken:  # no such setting, or one that ran, runs or is the best
                    view.tell(trial, state=TrialState.FAIL)
                    continue
                trial.set_user_attr(KEY, key)
                self._asked.add(trial.number)
                break
            else:
                raise AgentError(f"search space exhausted: the last {SAMPLER_ASKS + RANDOM_ASKS} settings drawn had "
                                 f"all been tried ({len(taken)} taken); use an LLM agent to change the code, or start "
                                 "from another train.py", fatal=True)
        assert new is not None and train_py is not None
        spelled = _spellings(source, files)
        moved = [name for name in best if new.get(name) != best[name]]
        description = ", ".join(f"{name} {show(name, best[name], spelled.get(name, ''))} -> "
                                f"{show(name, new[name], spell(new[name], spelled.get(name, '')))}"
                                for name in moved)
        how = {"tpe": "TPE", "cmaes": "CMA-ES", "random": "random search"}[self.sampler]
        if i >= SAMPLER_ASKS:
            how = f"random search (the {how} sampler kept drawing settings already tried)"
        elif opened < len(space.distributions):
            how += (f" over {opened} of the {len(space.distributions)} constants (the others stay at the best's "
                    "values; more open up as trials finish)")
        known = (f"{len(finished)} finished trial{'s' if len(finished) != 1 else ''}, best {ctx.metric} "
                 f"{ctx.sign * min(t.value for t in finished):.4f}" if finished else "no finished trial yet")
        rationale = f"Optuna {how}, trial {trial.number} of study {study.study_name!r} ({known})."
        return Proposal(train_py=train_py, description=description, rationale=rationale, usage=Usage(),
                        files=changed)


def _spellings(source: str, files: dict[str, str]) -> dict[str, str]:
    return {**spellings(source), **{f"{path}:{name}": code for path, text in files.items()
                                    for name, code in spellings(text).items()}}


def _write(source: str, files: dict[str, str], best: dict[str, Any], new: dict[str, Any]) -> tuple[str, dict]:
    """The new train.py, and the other files whose constants moved (complete new texts)."""
    spelled = _spellings(source, files)
    code = {name: Code(spell(v, spelled.get(name, ""))) for name, v in new.items() if v != best.get(name)
            or type(v) is not type(best.get(name))}
    own = {name: c for name, c in code.items() if ":" not in name}
    changed = {}
    for path in sorted({name.rpartition(":")[0] for name in code if ":" in name}):
        changed[path] = set_constants(files[path], {name.rpartition(":")[2]: c for name, c in code.items()
                                                    if name.rpartition(":")[0] == path})
    return (set_constants(source, own) if own else source), changed


def _best_source(ctx: Context) -> tuple[str, dict[str, str]]:
    """The train.py and other editable files to change: the best's, also when asked to fix a failure (the loop
    then shows the failed one)."""
    if ctx.failure is not None and ctx.train_py == ctx.failure.train_py:
        kept = [e for e in sorted(ctx.history, key=lambda e: e.number) if e.status == "keep" and e.train_py]
        if kept:
            return kept[-1].train_py, {**ctx.files, **kept[-1].files}
    return ctx.train_py, ctx.files
