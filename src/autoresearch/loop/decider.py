"""The decision on a finished run: the policy, seed repeats where they matter, and a re-measure of the best when
the machine's load moved (load.py). It asks for more runs through a callable and never writes a record: the
ledger does that, under its lock, against the best as it stands then (loop/scheduler.py)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.loop import load
from autoresearch.loop.journal import ExperimentRecord
from autoresearch.loop.ledger import Ledger
from autoresearch.loop.policy import GreedyPolicy, NoisePolicy, noise_sigma
from autoresearch.run.result import RunResult
from autoresearch.settings import Settings
from autoresearch.workspace import read_constants, set_constants

# Runs one more time: (source, run directory, earlier val_bpb of this change or None) -> RunResult; a re-measure of
# the best passes at=<the best's commit> too, so a task's other editable files are the best's, not the change's.
RunFn = Callable[..., RunResult]


@dataclass
class Decision:
    status: str  # keep | discard | crash | rejected
    evidence: dict
    runs: list[float]  # val_bpb of every run of the change
    reference: ExperimentRecord | None  # the best it was compared with


class Decider:
    def __init__(self, policy: GreedyPolicy | NoisePolicy, settings: Settings, ledger: Ledger, message) -> None:
        self.policy, self.settings, self.ledger, self.message = policy, settings, ledger, message

    def decide(self, rec: ExperimentRecord, result: RunResult, run_dir: Path, run: RunFn) -> Decision:
        """Decide on a finished run; under the noise policy, repeat runs with other seeds where it matters; under
        a time budget, re-measure the best when the machine's load has moved."""
        if not result.ok:
            status = "rejected" if result.status == "rejected" else "crash"
            return Decision(status, {"why": result.reason}, [], None)
        runs, tests, speeds, loads = [result.val_bpb], [result.test_bpb], [result.tokens_per_second], [result.load]
        best = self.ledger.best()
        ref = self.ledger.reference(best) if best else None
        sigma, df = self.ledger.noise()
        extra = 0
        while True:
            for _ in range(extra):
                seed_run = run(with_seed(rec.train_py, len(runs)),
                               run_dir.with_name(f"{run_dir.name}-seed{len(runs)}"), runs)
                if not seed_run.ok:
                    return Decision("crash", {"why": f"a repeat with another seed failed: {seed_run.reason}",
                                              "runs": runs}, runs, best)
                runs.append(seed_run.val_bpb)
                tests.append(seed_run.test_bpb)
                speeds.append(seed_run.tokens_per_second)
                loads.append(seed_run.load)
            final = extra > 0 or best is None or self.policy.confirm_runs == 0
            decision = self.policy.decide(runs, ref.val_bpb if ref else None, ref.runs if ref else 1, sigma,
                                          final=final, df=df)
            if not decision.rerun:
                break
            extra = self.policy.confirm_runs
            self.message(f"experiment {rec.number}: marginal gain; measuring again with {extra} other seed(s)")
        evidence = {**decision.evidence, "tests": tests, "tps": speeds, "load": loads}
        if ref is not None and not self.settings.token_budget:
            decision, evidence = self._check_load(rec, best, ref, runs, loads, (sigma, df), run_dir, decision,
                                                  evidence, run)
        result.val_bpb = statistics.fmean(runs)
        known = [t for t in tests if t is not None]
        result.test_bpb = statistics.fmean(known) if known else None
        return Decision("keep" if decision.keep else "discard", evidence, runs, best)

    def against(self, runs: list[float], best: ExperimentRecord) -> tuple[bool, dict]:
        """The final word on runs measured against an earlier best, now that `best` is the best."""
        ref = self.ledger.reference(best)
        sigma, df = self.ledger.noise()
        decision = self.policy.decide(runs, ref.val_bpb, ref.runs, sigma, final=True, df=df)
        return decision.keep, decision.evidence

    def baseline(self, results: list[RunResult]) -> Decision:
        """The baseline and its seed repeats, run side by side: the noise floor, measured under the sharing the
        experiments will have."""
        failed = [r for r in results if not r.ok]
        if failed:
            why = failed[0].reason if failed[0] is results[0] else f"a repeat with another seed failed: " \
                                                                    f"{failed[0].reason}"
            return Decision("crash", {"why": why}, [], None)
        runs = [r.val_bpb for r in results]
        tests = [r.test_bpb for r in results]
        speeds = [r.tokens_per_second for r in results]
        loads = [r.load for r in results]
        sigma = noise_sigma(runs) if len(runs) > 1 else None
        decision = self.policy.decide(runs, None, 1, sigma, final=True)
        evidence = {**decision.evidence, "tests": tests, "tps": speeds, "load": loads}
        if len(runs) > 1:
            evidence["sigma"] = sigma
            self.ledger.update_info(noise={"runs": runs, "std": sigma, "mean": statistics.fmean(runs),
                                           "tests": tests, "tps": speeds, "load": loads})
        return Decision("keep" if decision.keep else "discard", evidence, runs, None)

    def _check_load(self, rec, best, ref, runs, loads, noise, run_dir, decision, evidence, run: RunFn):
        """The change met another load than the best was measured under, in the direction that could have decided
        it (a keep on a quieter machine, a discard on a busier one): judge it again against the best's figures at
        that load, running the best once more now where it has none (load.py)."""
        here = load.mean_known(loads)
        tol = load.load_tolerance(((self.ledger.info().get("noise") or {}).get("load")) or [])
        moved = load.moved(ref.load, here, tol)
        # A discard on a busier machine is judged again under the noise policy only: a greedy run's records keep
        # their promise that each keep's figure beats the one before (a best re-measured busier is worse).
        busier_discard = not decision.keep and moved > 0 and isinstance(self.policy, NoisePolicy)
        if not (decision.keep and moved in (-1, load.UNKNOWN) or busier_discard):
            return decision, evidence
        again = {"before": ref.to_dict(), "tolerance": tol, "load": here}
        new_ref = ref.at_load(here, tol)
        if new_ref is None:
            self.message(f"experiment {rec.number}: its threads waited {_wait(here)} s per CPU second for a core, "
                         f"the best's {_wait(ref.load)} (a stretch more than {tol:.0%} apart, or unknown): running "
                         "the best again under the current load before deciding")
            fresh = run(best.train_py, run_dir.with_name(f"{run_dir.name}-ref"), None,
                        at=best.commit_sha or best.parent_commit)
            if not fresh.ok:  # cannot tell load from code: keep the decision, and say so
                return decision, {**evidence, "load_flag": f"the load moved by more than {tol:.0%}; re-measuring "
                                                           f"the best failed: {fresh.reason}"}
            new_ref = ref.with_figure(load.Figure(fresh.val_bpb, fresh.load, rec.number), tol,
                                      fresh.tokens_per_second)
            again["fresh"] = fresh.val_bpb
        self.ledger.update_info(reference=new_ref.to_dict())
        decision = self.policy.decide(runs, new_ref.val_bpb, new_ref.runs, noise[0], final=True, df=noise[1])
        return decision, {**decision.evidence, "tests": evidence["tests"], "tps": evidence["tps"], "load": loads,
                          "remeasured": {**again, "after": new_ref.to_dict()}}


@dataclass(frozen=True)
class TestWanted:
    """The loop's answer to the harness's "score the held-out test split?" for one run (Experiment.wants_test).

    Yes for the baseline and its seed repeats (there is no best yet), and for a run whose val_bpb, with this
    change's earlier runs, could still be kept by the policy; no otherwise: a discarded change's test_bpb is never
    used, and scoring it would double the evaluation. A plain value, so an Experiment can still be shipped.
    """

    __test__ = False  # not a pytest test class, whatever its name

    policy: GreedyPolicy | NoisePolicy
    best: float | None  # the best kept mean when the run started; None: this is the baseline
    runs: tuple[float, ...] = ()  # val_bpb of this change's earlier runs (seed repeats)

    def __call__(self, val_bpb: float) -> bool:
        return self.policy.could_keep([*self.runs, val_bpb], self.best)


def with_seed(source: str, k: int) -> str:
    """The same change with another seed (when train.py has a SEED constant): what noise looks like."""
    constants = read_constants(source)
    if isinstance(constants.get("SEED"), int):
        return set_constants(source, {"SEED": constants["SEED"] + 1000 * k})
    return source


def _wait(w: float | None) -> str:
    return "an unknown number of" if w is None else f"{w:.2f}"
