"""`autoresearch ablate`: what each kept change of a run is worth, measured by taking it out of the best.

Each change kept after the baseline, in the order it was decided, is taken out of the best. A change that only set
CAPS constants (the `search` agent's kind) is taken out by name: each constant it set goes back to its old value
where the best still holds the change's (a constant a later change set again belongs to that change now; a change
with nothing of its own left is no longer in the best). Any other change is reverted by a three-way merge with the
change's train.py as the base, the best as ours and the train.py it was made on as theirs (loop/merge.py); where
it and a later change touch the same or adjacent lines the revert conflicts, and the change is reported with
those lines and skipped, never forced. A task's other editable files are reverted the same way, each by a
three-way merge of its own (a conflict in any skips the change). The best and each ablated source then run with the
same K seeds. A change's worth is the mean test_bpb without it minus the
best's: positive, it helps on the held-out split. Within the noise (loop/measure.py) it is worth nothing: kept on
a lucky draw, or made redundant by a later change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autoresearch.task.metric import metric_of
from autoresearch.loop.measure import (
    Bench,
    Difference,
    Measured,
    Stats,
    StudyError,
    Subject,
    Variant,
    finish_study,
    local_backend,
    open_subject,
    stop_study,
    study_root,
)
from autoresearch.loop.merge import (apply_by_name, constant_change, constant_values, merge, merge_files, same_value,
                                     spans)
from autoresearch.settings import Settings

VERDICTS = {1: "helps", 0: "worth nothing", -1: "hurts"}


@dataclass
class Change:
    """One kept change and what taking it out of the best did."""

    number: int
    description: str
    status: str  # measured | conflict | gone | failed
    note: str = ""
    stats: Stats | None = None  # the best without it
    worth: Difference | None = None  # without it minus the best: positive, the change helps

    @property
    def verdict(self) -> str:
        """helps | worth nothing | hurts, or why it was not measured."""
        if self.status != "measured" or self.worth is None:
            return {"conflict": "not measured: its revert conflicts",
                    "gone": "not measured: no longer in the best"}.get(self.status, "not measured: runs failed")
        return VERDICTS[self.worth.sign()]

    @property
    def worthless(self) -> bool:
        return self.status == "measured" and self.worth is not None and self.worth.sign() == 0

    @classmethod
    def from_dict(cls, data: dict) -> Change:
        return cls(number=data["number"], description=data.get("description", ""), status=data["status"],
                   note=data.get("note", ""), stats=Stats.from_dict(data["stats"]) if data.get("stats") else None,
                   worth=Difference.from_dict(data["worth"]) if data.get("worth") else None)


@dataclass
class Ablation:
    study_id: int
    tag: str
    best_number: int
    seeds: int
    noise_floor: float | None  # the run's, if it measured one
    best: Stats | None  # None when nothing could be reverted, so nothing ran
    changes: list[Change] = field(default_factory=list)
    noise_df: int | None = None  # the noise floor's degrees of freedom (None: taken as known)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Ablation:
        return cls(study_id=data["study_id"], tag=data["tag"], best_number=data["best_number"], seeds=data["seeds"],
                   noise_floor=data.get("noise_floor"),
                   best=Stats.from_dict(data["best"]) if data.get("best") else None,
                   changes=[Change.from_dict(c) for c in data.get("changes", [])], noise_df=data.get("noise_df"))

    def change(self, number: int) -> Change | None:
        return next((c for c in self.changes if c.number == number), None)


def plan(subject: Subject) -> tuple[list[Change], list[Variant]]:
    """Each kept change, and the best without it: constants it set are set back by name where the best still holds
    its values (one that a later change set again is that change's now); any other change is reverted by a
    three-way merge of lines."""
    best = subject.best.train_py
    best_files = subject.files_at(subject.best.commit_sha or subject.best.parent_commit)
    keeps = list(subject.keeps())
    changes, variants = [], []
    for i, keep in enumerate(keeps):
        before = subject.source_at(keep.parent_commit)
        # A task's other editable files: the change taken out of each of the best's by a three-way merge
        files = merge_files(subject.files_at(keep.commit_sha or keep.parent_commit), best_files,
                            subject.files_at(keep.parent_commit))
        change = Change(number=keep.number, description=keep.description, status="measured")
        revert = constant_change(keep.train_py, before)  # by name: from this change's values back to the old
        if revert is not None:
            later = _setters(subject, keeps[i + 1:])
            values = constant_values(best)
            again = {n: v for n, v in revert.items() if not (len(values.get(n, [])) == 1
                                                             and same_value(values[n][0], v[0]))}
            said = "; ".join(f"{later[n]} set {n} again ({v[0]} -> {values[n][0]})" if n in later and values.get(n)
                             else f"{n} is no longer in the best as it set it" for n, v in again.items())
            left = {n: v for n, v in revert.items() if n not in again}
            reverted, _ = apply_by_name(best, left) if left else (best, {})
            change.note = said
        else:
            m = merge(keep.train_py, best, before)
            reverted = m.text
            if reverted is None:
                where = spans(m.lines) + " of the best"
                change.status, change.note = "conflict", (f"its revert and a later change touch the same or "
                                                          f"adjacent lines ({where}), so it cannot be taken out "
                                                          "alone: skipped")
        if files is None and change.status == "measured":
            change.status, change.note = "conflict", ("its revert and a later change touch the same or adjacent "
                                                      "lines of another editable file, so it cannot be taken out "
                                                      "alone: skipped")
        if reverted == best and files == best_files and change.status == "measured":
            change.status = "gone"
            change.note = change.note or "reverting it leaves the best as it is: a later change undid it"
        elif reverted is not None and files is not None and change.status == "measured":
            variants.append(Variant(f"without #{keep.number}", reverted, files))
        changes.append(change)
    return changes, variants


def _setters(subject: Subject, later) -> dict[str, str]:
    """For each constant the later keeps set, the last one that did ("#5")."""
    out: dict[str, str] = {}
    for keep in later:
        before, after = constant_values(subject.source_at(keep.parent_commit)), constant_values(keep.train_py)
        for name, values in after.items():
            if before.get(name) != values:
                out[name] = f"#{keep.number}"
    return out


def ablate(ws: Path, settings: Settings, *, tag: str | None = None, seeds: int = 2, workers: int | None = None,
           per_device: int = 1, cache: Path | None = None, timeout: float | None = None,
           on_plan: Callable[[Ablation], None] = lambda a: None,
           on_run: Callable[[Measured], None] = lambda m: None) -> Ablation:
    """Measure the run's best and the best without each kept change, with `seeds` seeds each, on this machine's
    workers; record it in the journal and return it. Raises StudyError when it cannot run."""
    if seeds < 1:
        raise StudyError(f"--seeds must be at least 1, not {seeds}")
    subject = open_subject(ws, tag)
    try:
        changes, variants = plan(subject)
        if not changes:
            raise StudyError(f"nothing to ablate: run {subject.run.tag} kept no change after its baseline")
        backend = local_backend(settings, workers, per_device)
        study = subject.journal.add_study(subject.run.tag, "ablate", subject.best.number, plan={
            "seeds": seeds, "variants": ["best", *(v.name for v in variants)], "budget": settings.budget_label,
            "skipped": {str(c.number): c.note for c in changes if c.status != "measured"}})
        ablation = Ablation(study_id=study.id, tag=subject.run.tag, best_number=subject.best.number, seeds=seeds,
                            noise_floor=subject.noise_floor, best=None, changes=changes,
                            noise_df=subject.noise_df)
        on_plan(ablation)
        try:
            if variants:
                bench = Bench(subject, study.id, study_root(subject, "ablate", study.id), backend, settings,
                              cache=cache, timeout=timeout, eval_rate=subject.eval_rate(),
                              first_answer_limit=subject.first_answer_limit(), on_run=on_run)
                best_files = subject.files_at(subject.best.commit_sha or subject.best.parent_commit)
                stats = bench.measure([Variant("best", subject.best.train_py, best_files), *variants], seeds)
                judge(ablation, stats, metric_of(subject.run.info).sign)
        except BaseException as e:
            stop_study(subject, study.id, f"interrupted: {type(e).__name__}")
            raise
        finally:
            backend.close()
        finish_study(subject, study.id, ablation.to_dict())
        return ablation
    finally:
        subject.close()


def judge(ablation: Ablation, stats: dict[str, Stats], sign: int = 1) -> None:
    """Each measured change's worth against the best, with the margin of the noise. `sign` -1: a task's metric that
    is maximized, where the worth is the best's figure minus the one without the change (positive: it helps)."""
    best = ablation.best = stats["best"]
    measured = [s for s in stats.values() if s.vals]
    for c in ablation.changes:
        if c.status != "measured":
            continue
        c.stats = stats[f"without #{c.number}"]
        if not best.vals or not c.stats.vals:
            c.status = "failed"
            c.note = "; ".join((best.failed if not best.vals else c.stats.failed)[:2])
            continue
        pair = (c.stats, best) if sign > 0 else (best, c.stats)
        c.worth = Difference.between(*pair, ablation.noise_floor, measured, floor_df=ablation.noise_df)

