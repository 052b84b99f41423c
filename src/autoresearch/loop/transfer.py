"""`autoresearch transfer --set NAME=VALUE`: does the run's gain hold at another setting?

The baseline (experiment 1's train.py) and the best, both with the same CAPS constants overridden, run with K
seeds on the workspace's budget, or on one given for these runs only. The gain at the new setting is the
baseline's mean test_bpb minus the best's, judged against the noise of these very runs (their seeds' spread; the
run's noise floor where each ran once, since the run measured it at its own setting): it holds (clearly
positive), shrinks (within the noise: it is gone), or reverses (the best is clearly worse).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.task.metric import metric_of
from autoresearch.task.store import is_task_workspace
from autoresearch.loop.measure import (
    Bench,
    Difference,
    Measured,
    Stats,
    StudyError,
    Variant,
    finish_study,
    local_backend,
    minus,
    open_subject,
    stop_study,
    study_root,
)
from autoresearch.settings import Settings, SettingsError
from autoresearch.workspace import CONSTANT_RE, EDITABLE, constants_of, set_constants

VERDICTS = {1: "holds", 0: "shrinks", -1: "reverses"}
NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass
class Transfer:
    study_id: int
    tag: str
    best_number: int
    seeds: int
    overrides: dict[str, Any]
    budget: str  # what ended training in these runs, for people
    baseline: Stats = field(default_factory=Stats)
    best: Stats = field(default_factory=Stats)
    gain: Difference | None = None  # baseline minus best at the new setting: positive, the best is better
    original: dict[str, float | None] = field(default_factory=dict)  # the run's own gain: test, val
    noise: str = ""  # where the margin came from, for people

    @property
    def verdict(self) -> str:
        """holds | shrinks | reverses; failed when either side has no figure."""
        return "failed" if self.gain is None else VERDICTS[self.gain.sign()]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Transfer:
        return cls(study_id=data["study_id"], tag=data["tag"], best_number=data["best_number"], seeds=data["seeds"],
                   overrides=dict(data.get("overrides", {})), budget=data.get("budget", ""),
                   baseline=Stats.from_dict(data.get("baseline", {})), best=Stats.from_dict(data.get("best", {})),
                   gain=Difference.from_dict(data["gain"]) if data.get("gain") else None,
                   original=dict(data.get("original", {})), noise=data.get("noise", ""))


def parse_sets(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs: VALUE a Python literal (12, 0.5, 2**19 is not one: write 524288), else a string."""
    out: dict[str, Any] = {}
    for item in items:
        name, eq, text = item.partition("=")
        name, text = name.strip(), text.strip()
        path, _, bare = name.rpartition(":")  # `model.py:WIDTH`: a constant of a task's other editable file
        if not eq or not NAME_RE.fullmatch(bare) or (":" in name and not path.endswith(".py")) or not text:
            raise StudyError(f"--set {item!r}: write NAME=VALUE, NAME a CAPS constant of train.py (e.g. DEPTH=12), "
                             "or of another editable Python file of a task as PATH:NAME (e.g. model.py:WIDTH=64)")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text  # WINDOW_PATTERN=SSSL
    if not out:
        raise StudyError("give at least one --set NAME=VALUE (e.g. --set DEPTH=12)")
    return out


def with_overrides(source: str, overrides: dict[str, Any], which: str, known: str,
                   files: dict[str, str] | None = None) -> Variant:
    """The `which` variant: `source` and its other editable `files` with the constants set (`path:NAME` in the file
    at path); a name that is not there is a StudyError that lists the constants both variants have."""
    files = dict(files or {})
    texts = {EDITABLE: source, **files}
    by_file: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        path, _, name = key.rpartition(":")
        by_file.setdefault(path or EDITABLE, {})[name] = value
    missing = []
    for path, values in by_file.items():
        names = {m["name"] for line in texts.get(path, "").splitlines() if (m := CONSTANT_RE.match(line))}
        missing += [name if path == EDITABLE else f"{path}:{name}" for name in sorted(set(values) - names)]
    if missing:
        raise StudyError(f"the {which} has no constant {', '.join(missing)}; the constants both the baseline and the "
                         f"best have: {known}")
    out = {path: set_constants(texts[path], values) for path, values in by_file.items()}
    return Variant(which, out.pop(EDITABLE, source), {**files, **out})


def budget_settings(settings: Settings, time_budget: float | None, token_budget: int | None) -> Settings:
    """The workspace's settings with the budget of these runs: seconds of training, or tokens (with the time
    budget then a cap, as always)."""
    changes: dict[str, Any] = {}
    if time_budget is not None:
        changes.update(time_budget=time_budget, token_budget=0)
    if token_budget is not None:
        changes["token_budget"] = token_budget
    try:
        return settings.replace(**changes) if changes else settings
    except SettingsError as e:
        raise StudyError(str(e)) from e


def transfer(ws: Path, settings: Settings, overrides: dict[str, Any], *, tag: str | None = None, seeds: int = 2,
             time_budget: float | None = None, token_budget: int | None = None, workers: int | None = None,
             per_device: int = 1, cache: Path | None = None, timeout: float | None = None,
             on_plan: Callable[[Transfer], None] = lambda t: None,
             on_run: Callable[[Measured], None] = lambda m: None) -> Transfer:
    """Run the baseline and the best with `overrides`, `seeds` seeds each; record it in the journal and return it.
    Raises StudyError when it cannot run."""
    if seeds < 1:
        raise StudyError(f"--seeds must be at least 1, not {seeds}")
    if (time_budget is not None or token_budget is not None) and is_task_workspace(ws):
        raise StudyError("--time-budget and --token-budget are the GPT workspace's budgets; a task's runs keep the "
                         "budget its declaration gives (time_budget and timeout in task.toml), so they would change "
                         "nothing here: leave them out (nothing was run)")
    settings = budget_settings(settings, time_budget, token_budget)
    subject = open_subject(ws, tag)
    try:
        if subject.best.number == 1:
            raise StudyError(f"run {subject.run.tag} kept no change after its baseline: there is no gain to transfer")
        base_src, best_src = subject.baseline.train_py, subject.best.train_py
        files = [subject.files_at(e.commit_sha or e.parent_commit) for e in (subject.baseline, subject.best)]
        both = ", ".join(sorted(set(constants_of(base_src, files[0])) & set(constants_of(best_src, files[1]))))
        variants = [with_overrides(base_src, overrides, "baseline", both, files[0]),
                    with_overrides(best_src, overrides, "best", both, files[1])]
        backend = local_backend(settings, workers, per_device)
        study = subject.journal.add_study(subject.run.tag, "transfer", subject.best.number, plan={
            "seeds": seeds, "set": overrides, "budget": settings.budget_label,
            "time_budget": settings.time_budget, "token_budget": settings.token_budget})
        result = Transfer(study_id=study.id, tag=subject.run.tag, best_number=subject.best.number, seeds=seeds,
                          overrides=overrides, budget=settings.budget_label,
                          original={"test": minus(subject.baseline.test_bpb, subject.best.test_bpb),
                                    "val": minus(subject.baseline.val_bpb, subject.best.val_bpb)})
        on_plan(result)
        try:
            # At another setting the baseline's evaluation speed and first answer do not apply: no such limits.
            stats = Bench(subject, study.id, study_root(subject, "transfer", study.id), backend, settings,
                          cache=cache, timeout=timeout, on_run=on_run).measure(variants, seeds)
        except BaseException as e:
            stop_study(subject, study.id, f"interrupted: {type(e).__name__}")
            raise
        finally:
            backend.close()
        result.baseline, result.best = stats["baseline"], stats["best"]
        if result.baseline.vals and result.best.vals:
            # The run's noise floor was measured at its own setting: only a stand-in when no seed repeats here.
            floor = subject.noise_floor if seeds == 1 else None
            pair = (result.baseline, result.best) if metric_of(subject.run.info).sign > 0 else \
                (result.best, result.baseline)  # a maximized task metric: the gain is best minus baseline
            result.gain = Difference.between(*pair, floor, [result.baseline, result.best],
                                             floor_df=subject.noise_df if floor else None)
            result.noise = ("the seeds' spread" if seeds > 1 else "the run's noise floor, at its own setting"
                            if floor else "none measured (one seed, and the run measured no noise floor): any "
                            "difference counts; give --seeds 2 or more")
        finish_study(subject, study.id, result.to_dict())
        return result
    finally:
        subject.close()
