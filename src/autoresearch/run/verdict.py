"""The verdict on a finished experiment: a RunResult from the exit, the watch's record and the scorer's report.

The official figures are the scorer's; what train.py's process sent is informative and can only get a run
rejected. Figures below the data's entropy floor are refused: no model scores that honestly.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

from autoresearch.run.result import Experiment, RunResult, parse_summary
from autoresearch.settings import TOKEN_MODE_CAP, Settings

FLOOR_MARGIN = 0.01  # a figure this far (relative) below the data's entropy floor is refused: sampling luck on a
                     # finite evaluation is far smaller, and memorised evaluation data lands far below


def below_floor(settings: Settings, cache: Path | None, harness: dict) -> str:
    """Why the figures are impossible ('' if they are not): below the entropy floor of the data, where one is known
    (the embedded corpus). No model can score lower on average; a run that does memorised the evaluation data."""
    from autoresearch.harness.constants import eval_key, load_meta, prepared_dir

    try:
        window = load_meta(prepared_dir(settings, cache))["eval"][eval_key(settings)]
    except (KeyError, OSError, ValueError):
        return ""
    for split in ("val", "test"):
        floor, figure = (window.get(split) or {}).get("floor_bpb"), harness.get(f"{split}_bpb")
        if isinstance(floor, (int, float)) and isinstance(figure, (int, float)) and figure < floor * (1 - FLOOR_MARGIN):
            return (f"{split}_bpb {figure:.4f} is below the entropy floor of this data ({floor:.4f}): no model can "
                    "score that; the run saw the evaluation data, or the figure is not a measurement")
    return ""


OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "MemoryError", "MPS backend out of memory",
               "DefaultCPUAllocator: can't allocate memory")
NAN_MARKERS = ("FAIL", "loss is nan", "nan loss")


# What the harness in train.py's process reports, in words of ours: from the moment it holds evaluation rows, a
# reason it sends could carry them into the records an agent is shown.
CLIENT_RULES = {
    "split": "make_dataloader was asked for a split other than 'train': training may read the 'train' split only",
    "train_after_eval": "a training batch was asked for after evaluate_bpb started: train first, then evaluate "
                        "once, at the end",
    "evaluated_twice": "evaluate_bpb was called a second time: train, then evaluate once, at the end",
    "stateful": "the model's parameters or buffers changed during the evaluation: training ends before "
                "evaluate_bpb, which scores the model as it is",
    "scorer": "the scorer refused to score the model",
}


def _told(event: dict, at: float, eval_at: float | None) -> dict:
    """A violation train.py's process reported, its reason replaced by ours once the evaluation had begun."""
    if eval_at is None or at < eval_at:
        return event
    kind = str(event.get("kind", ""))
    return {**event, "reason": CLIENT_RULES.get(kind, "train.py's process reported a broken rule of the harness "
                                                      "during the evaluation")}


def classify(returncode: int | None, watch, tail: list[str], exp: Experiment, leftovers: int,
              cache: Path | None = None, summary_lines: list[str] | None = None) -> RunResult:
    """`tail`: the output the records keep; `summary_lines`: where the summary block is read (default: tail)."""
    text = "\n".join(tail)
    summary = parse_summary(tail if summary_lines is None else summary_lines)
    harness = dict(watch.scorer_said("result") or {})  # the official figures: the scorer's, and no one else's
    harness.pop("event", None)
    client = watch.last("eval_done") or {}  # informative: train.py's process measured its own memory
    if harness:
        harness.update({k: client[k] for k in ("device",) if k in client})
        if watch.memory_mb is not None:  # as reported before any held-out row was served (see _Watch.test_clock)
            harness["peak_memory_mb"] = watch.memory_mb
    # The first violation is the cause: the scorer's refusal first (it decides), then what the client noticed.
    violation = watch.scorer_said("violation") or next(
        (_told(e, t, watch.eval_at) for t, e in watch.events if e.get("event") == "violation"), None)
    settings = exp.settings
    trained = watch.training_seconds
    r = RunResult(status="crash", summary=summary, harness=harness, error_tail="\n".join(tail[-15:]),
                  training_seconds=trained, startup_seconds=watch.clock_start,
                  steps=watch.totals.get("steps"), train_tokens=watch.totals.get("tokens"),
                  tokens_per_second=watch.tokens_per_second)
    if watch.answers:
        r.test_wanted = watch.answers[-1][1]
    if watch.eval_at is not None:
        r.eval_seconds = (time.monotonic() - watch.t0) - watch.eval_at
    limit = settings.training_limit

    def verdict(status: str, reason: str) -> RunResult:
        r.status, r.reason = status, reason
        if status != "ok":
            r.val_bpb = r.test_bpb = None
        return r

    if watch.stopped_for == "memory":
        return verdict("oom", f"used {watch.peak_rss_mb:,.0f} MB, over the memory limit of "
                              f"{settings.memory_limit:,} MB: stopped")
    if watch.stopped_for == "timeout":
        return verdict("timeout", f"still running after {exp.timeout:.0f}s: stopped (SIGTERM, then SIGKILL)")
    if watch.stopped_for == "startup":
        return verdict("timeout", f"start-up took over {settings.startup_seconds:.0f}s without asking for a "
                                  "training batch (imports, data, building the model): stopped. On a slow or busy "
                                  "machine, raise startup_limit in autoresearch.toml")
    if watch.stopped_for == "eval":
        return verdict("timeout", f"evaluation ran over its limit of {watch.eval_limit:.0f}s (about "
                                  f"{watch.expected_eval:.0f}s expected at this run's speed): stopped")
    if watch.stopped_for == "train_time" or (trained is not None and trained > limit):
        cap = (f"{TOKEN_MODE_CAP} x the time budget of {settings.time_budget:g}s (a token budget of "
               f"{settings.token_budget:,} ends training; the time is only a cap)" if settings.token_budget else
               f"the budget of {settings.time_budget:g}s")
        return verdict("timeout", f"trained for {trained:.0f}s by the runner's clock, past {cap} + "
                                  f"{settings.allowance:g}s allowance")
    if watch.miscount or (r.train_tokens or 0) < 0:
        return verdict("rejected", f"{watch.miscount or 'a negative training token count'}: the harness's loader "
                                   "counts what it serves; pass it plain positive ints")
    budget = settings.token_budget
    if budget and (r.train_tokens or 0) > budget:
        return verdict("rejected", f"trained on {r.train_tokens:,} tokens, past the token budget of {budget:,}")
    if violation is not None:
        return verdict("rejected", f"{violation.get('reason', 'broke a rule of the harness')}")
    if returncode == 0 and harness:
        val = harness.get("val_bpb")
        if val is None or not math.isfinite(val):
            return verdict("nan", f"val_bpb is {val}")
        below = below_floor(settings, cache, harness)
        if below:
            return verdict("rejected", below)
        printed = summary.get("val_bpb")
        if printed is not None and abs(printed - val) > 1e-5:
            return verdict("rejected", f"train.py printed val_bpb {printed} but the harness measured {val:.6f}: "
                                       "only the harness's figure counts; print what evaluate_bpb returns")
        if leftovers:
            return verdict("rejected", f"left {leftovers} process(es) running after it finished (killed)")
        if harness.get("test_bpb") is None and watch.answers != [(val, False)]:
            # Skipping the test split is the runner's call alone: one question, about this very val_bpb, answered no.
            why = ("the runner asked for it" if any(want for _, want in watch.answers) else
                   "the runner was not asked" if not watch.answers else
                   f"the runner was asked about val_bpb {[v for v, _ in watch.answers]}, not {val}")
            return verdict("rejected", f"the harness scored no held-out test split ({why}): call "
                                       "evaluate_bpb(model, tokenizer, batch_size) as it is, once")
        r.val_bpb, r.test_bpb = val, harness.get("test_bpb")
        return verdict("ok", "ok")
    failed = watch.scorer_said("scorer_failed")
    if failed:
        return verdict("crash", f"the scorer could not start: {failed.get('reason')}")
    if returncode == 0:
        cut = watch.scorer_said("incomplete")
        return verdict("rejected", "train.py finished without the harness's evaluation" +
                       (f" (it stopped part way: {cut.get('reason')})" if cut else "") +
                       ": call evaluate_bpb(model, tokenizer, batch_size) at the end, once")
    if any(m in text for m in OOM_MARKERS) or returncode == -signal.SIGKILL:
        return verdict("oom", "out of memory" + (" (killed by the OS)" if returncode == -signal.SIGKILL else ""))
    if any(line.strip() in NAN_MARKERS or "nan" in line.lower().split() for line in tail[-5:]):
        return verdict("nan", "loss became NaN or exploded")
    last = next((line for line in reversed(tail) if line.strip()), "")
    return verdict("crash", f"exit code {returncode}: {last.strip()[:200]}")
