"""What one experiment is, and what comes back: Experiment, RunResult, and the parsing of what train.py prints.

An experiment is a value (the train.py source, a task's other editable files, and the workspace it is measured
in), so it could be shipped to another machine; a RunResult comes back for every outcome. Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from autoresearch.settings import Settings

# "lost": the machine running it went away (a Ray node died) and no retry finished it; "interrupted": the
# orchestrator stopped it (Ctrl-C, SIGTERM). Neither comes from the runner itself: the backends set them.
STATUSES = ("ok", "crash", "timeout", "nan", "oom", "rejected", "lost", "interrupted")

STEP_RE = re.compile(
    r"^step (?P<step>\d+) \((?P<pct>[\d.]+)%\) \| loss: (?P<loss>[-+\w.]+)"
    r"(?:.*?tok/sec: (?P<tps>[\d,]+))?(?:.*?mfu: (?P<mfu>[\d.]+)%)?(?:.*?remaining: (?P<rem>\d+)s)?"
)
SUMMARY_RE = re.compile(r"^(?P<key>[a-z_]+):\s+(?P<value>\S+)\s*$")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # the thread pools a CPU worker's share (or the user) sets


@dataclass(frozen=True)
class Experiment:
    source: str  # the complete train.py
    workspace: Path
    settings: Settings
    run_dir: Path  # this experiment's own directory: train.py copy, log, result file
    timeout: float | None = None  # an overall wall-clock limit on top of the phase limits (None: phases only)
    cache: Path | None = None
    # The seed of the compile cache (run/compile_cache.py): copied into the run's own private cache, which is
    # deleted after the run; the run can neither read nor write the seed itself. None: no cache settings.
    compile_cache: Path | None = None
    fills_compile_cache: bool = False  # a human-written source: its private cache becomes the seed if it succeeds
    eval_rate: float | None = None  # evaluation tokens/s measured on this workspace (the slowest recent), if known
    # Seconds the model may take for the scorer's first call (None: no limit but the evaluation phase's), from the
    # workspace's human-written runs: beyond it, the time would be training time on the rows it holds.
    first_answer_limit: float | None = None
    # Asked once val_bpb is measured: score the held-out test split too? (None: always.) Runs in the runner's
    # reader thread while the experiment waits, so it must be quick; train.py never sees it.
    wants_test: Callable[[float], bool] | None = None
    # Extra environment of the experiment's processes (train.py and its scorer): the worker's device
    # (CUDA_VISIBLE_DEVICES) and its share of the CPU cores (OMP_NUM_THREADS). Pairs, so the value stays hashable.
    env: tuple[tuple[str, str], ...] = ()
    # A task's editable files other than train.py, (path, complete text) pairs, as this experiment runs them (its
    # commit's: exactly these, () for none). None: as the workspace holds them (`autoresearch train`; the GPT task
    # has none).
    files: tuple[tuple[str, str], ...] | None = None
    # More paths a task experiment's sandbox covers, beside its judge's copy: on a Ray node, the node's cache of
    # judge's copies and the orchestrator's own (backends/ray_task.py).
    hidden: tuple[str, ...] = ()


@dataclass
class Progress:
    step: int
    percent: float
    loss: float
    tokens_per_second: float | None = None
    mfu: float | None = None
    remaining: float | None = None


@dataclass
class RunResult:
    status: str  # one of STATUSES
    val_bpb: float | None = None  # official, from the harness's channel
    test_bpb: float | None = None  # held out: never shown to an agent; None when the runner did not want it
    test_wanted: bool | None = None  # the runner's answer when the harness asked whether to score the test split
    summary: dict[str, float] = field(default_factory=dict)  # what train.py printed (informative only)
    harness: dict[str, float] = field(default_factory=dict)  # the harness's full result
    wall_seconds: float = 0.0
    startup_seconds: float | None = None  # launch -> timed training, by the runner's clock
    training_seconds: float | None = None  # timed training -> evaluation, by the runner's clock
    eval_seconds: float | None = None  # evaluation start -> exit, by the runner's clock
    steps: int | None = None  # optimizer steps, counted by the harness
    train_tokens: int | None = None  # training tokens the harness's loader served
    tokens_per_second: float | None = None  # training tokens served while the clock ran / training_seconds
    returncode: int | None = None
    log_path: Path | None = None
    error_tail: str = ""  # last lines of the log when the run failed
    reason: str = ""  # one line: why this status
    curve: list[dict] = field(default_factory=list)  # the training curve: Progress points as dicts (decimated)
    node: str = ""  # where it ran: this machine's name, or a Ray node's
    load: float | None = None  # the load it met: its threads' wait for a core per CPU second (run/load_meter.py)
    load_signals: dict = field(default_factory=dict)  # all the meter read (LoadReading.to_dict), for the record

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        """The inverse of to_dict (a result that crossed a process or a network); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if values.get("log_path"):
            values["log_path"] = Path(values["log_path"])
        return cls(**values)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def memory_gb(self) -> float:
        """Peak memory as the harness measured it (device memory on a GPU, the process's peak RSS on a CPU); what
        train.py prints as peak_vram_mb is not used."""
        return (self.harness.get("peak_memory_mb") or 0.0) / 1024

    def to_dict(self) -> dict:
        d = asdict(self)
        d["log_path"] = str(self.log_path) if self.log_path else None
        return d


CURVE_POINTS = 1000  # points of a training curve kept with a result: every other one is dropped beyond it


def add_point(curve: list[dict], p: Progress) -> None:
    """Append a progress point, halving the curve's resolution whenever it outgrows CURVE_POINTS."""
    curve.append(asdict(p))
    if len(curve) > CURVE_POINTS:
        del curve[1:-1:2]


def compact_curve(curve: list[dict]) -> dict[str, list]:
    """A curve as the journal keeps it: one list per field (steps, loss, tokens/s), a third of the size of points."""
    return {"step": [p["step"] for p in curve], "loss": [p["loss"] for p in curve],
            "tokens_per_second": [p.get("tokens_per_second") for p in curve]}


def parse_progress(line: str) -> Progress | None:
    m = STEP_RE.match(line.strip())
    if not m:
        return None
    try:
        loss = float(m["loss"])
    except ValueError:
        loss = math.nan
    try:
        return Progress(
            step=int(m["step"]), percent=float(m["pct"]), loss=loss,
            tokens_per_second=float(m["tps"].replace(",", "")) if m["tps"] else None,
            mfu=float(m["mfu"]) if m["mfu"] else None,
            remaining=float(m["rem"]) if m["rem"] else None,
        )
    except ValueError:  # "step 1 (.%)": a line that looks like progress and is not
        return None


def parse_summary(lines: list[str]) -> dict[str, float]:
    """The `key: value` lines after the last `---` (what train.py says about itself; not official)."""
    try:
        start = len(lines) - 1 - lines[::-1].index("---")
    except ValueError:
        return {}
    out: dict[str, float] = {}
    for line in lines[start + 1 :]:
        m = SUMMARY_RE.match(line)
        if m:
            try:
                out[m["key"]] = float(m["value"])
            except ValueError:
                pass
    return out
