"""One experiment in a subprocess -> RunResult. Never raises for a failed run.

An experiment is a value (the train.py source plus the workspace it is measured in) so it could be shipped to
another machine. The runner writes the source into the experiment's own directory, runs it there in a new
process group with a scrubbed environment, streams its output to a log (and to a callback for live views),
enforces the time limit from outside, and takes the official metrics from the harness's result file only.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autoresearch.harness.evaluate import RESULT_ENV
from autoresearch.settings import CACHE_ENV, WORKSPACE_ENV, Settings, cache_dir

STATUSES = ("ok", "crash", "timeout", "nan", "oom", "rejected")
TERM_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL
STARTUP_ALLOWANCE = 120.0  # start-up, compilation and evaluation on top of the training budget
TAIL_LINES = 30
PGID_FILE = "pgid"

# Names of environment variables an experiment never sees: API keys and other credentials of the orchestrator.
SECRET_RE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)", re.IGNORECASE)
SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "OPENAI", "ANTHROPIC", "HF_TOKEN", "HUGGING")

STEP_RE = re.compile(
    r"^step (?P<step>\d+) \((?P<pct>[\d.]+)%\) \| loss: (?P<loss>[-+\w.]+)"
    r"(?:.*?tok/sec: (?P<tps>[\d,]+))?(?:.*?mfu: (?P<mfu>[\d.]+)%)?(?:.*?remaining: (?P<rem>\d+)s)?"
)
SUMMARY_RE = re.compile(r"^(?P<key>[a-z_]+):\s+(?P<value>\S+)\s*$")


@dataclass(frozen=True)
class Experiment:
    source: str  # the complete train.py
    workspace: Path
    settings: Settings
    run_dir: Path  # this experiment's own directory: train.py copy, log, result file
    timeout: float | None = None  # seconds; default: max(2 x budget, budget + STARTUP_ALLOWANCE)
    cache: Path | None = None

    @property
    def limit(self) -> float:
        if self.timeout is not None:
            return self.timeout
        budget = self.settings.time_budget
        return max(2 * budget, budget + STARTUP_ALLOWANCE)


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
    test_bpb: float | None = None  # held out: never shown to an agent
    summary: dict[str, float] = field(default_factory=dict)  # what train.py printed (informative only)
    harness: dict[str, float] = field(default_factory=dict)  # the harness's full result
    wall_seconds: float = 0.0
    returncode: int | None = None
    log_path: Path | None = None
    error_tail: str = ""  # last lines of the log when the run failed
    reason: str = ""  # one line: why this status

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def memory_gb(self) -> float:
        return self.summary.get("peak_vram_mb", 0.0) / 1024

    def to_dict(self) -> dict:
        d = asdict(self)
        d["log_path"] = str(self.log_path) if self.log_path else None
        return d


def scrubbed_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (SECRET_RE.search(k) or k.upper().startswith(SECRET_PREFIXES))}
    env.update(extra)
    return env


def run_experiment(exp: Experiment, on_line: Callable[[str], None] | None = None,
                   on_progress: Callable[[Progress], None] | None = None) -> RunResult:
    """Run `exp` to completion or to its limit. Every outcome is a RunResult; nothing here raises for a bad run."""
    run_dir = exp.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    script = run_dir / "train.py"
    script.write_text(exp.source)
    log_path = run_dir / "run.log"
    result_path = run_dir / "result.json"
    result_path.unlink(missing_ok=True)
    env = scrubbed_env({
        WORKSPACE_ENV: str(exp.workspace),
        RESULT_ENV: str(result_path),
        CACHE_ENV: str(exp.cache or cache_dir()),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen([sys.executable, str(script)], cwd=run_dir, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                    start_new_session=True, errors="replace", preexec_fn=_die_with_parent)
        except OSError as e:
            return RunResult(status="crash", log_path=log_path, reason=f"could not start python: {e}")
        (run_dir / PGID_FILE).write_text(str(proc.pid))  # lets a resumed orchestrator stop an orphaned run
        reader = threading.Thread(target=_pump, args=(proc, log, tail, on_line, on_progress), daemon=True)
        reader.start()
        timed_out = _wait(proc, exp.limit)
        _kill_group(proc)  # children the run left behind (compile workers, strays) go with it
        reader.join(timeout=5)
    (run_dir / PGID_FILE).unlink(missing_ok=True)
    result = _classify(proc.returncode, timed_out, list(tail), result_path, exp.limit)
    result.wall_seconds = time.monotonic() - t0
    result.returncode = proc.returncode
    result.log_path = log_path
    return result


def _die_with_parent() -> None:
    """Linux: the experiment gets SIGKILL if the orchestrator dies (kill -9 included), so none trains on alone."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


def kill_stale_group(run_dir: Path) -> int:
    """Kill what is left of a run an earlier orchestrator started and never saw finish. Returns processes hit.

    Only processes still in that run's process group *and* working in its directory are touched, so a recycled
    group id can never take an unrelated process down.
    """
    path = run_dir / PGID_FILE
    try:
        pgid = int(path.read_text())
    except (OSError, ValueError):
        return 0
    hit = 0
    for pid in _group_members(pgid):
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == run_dir.resolve():
                os.kill(pid, signal.SIGKILL)
                hit += 1
        except OSError:
            continue
    path.unlink(missing_ok=True)
    return hit


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _pump(proc: subprocess.Popen, log, tail: deque, on_line, on_progress) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        line = line.rstrip("\n")
        tail.append(line)
        if on_line:
            on_line(line)
        if on_progress and (p := parse_progress(line)):
            on_progress(p)


def _wait(proc: subprocess.Popen, limit: float) -> bool:
    """Wait for the process; at the limit, SIGTERM its group, then SIGKILL. True if it was stopped for time."""
    try:
        proc.wait(timeout=limit)
        return False
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=TERM_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    return True


def _kill_group(proc: subprocess.Popen) -> None:
    _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def parse_progress(line: str) -> Progress | None:
    m = STEP_RE.match(line.strip())
    if not m:
        return None
    try:
        loss = float(m["loss"])
    except ValueError:
        loss = math.nan
    return Progress(
        step=int(m["step"]), percent=float(m["pct"]), loss=loss,
        tokens_per_second=float(m["tps"].replace(",", "")) if m["tps"] else None,
        mfu=float(m["mfu"]) if m["mfu"] else None,
        remaining=float(m["rem"]) if m["rem"] else None,
    )


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


OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "MemoryError", "MPS backend out of memory",
               "DefaultCPUAllocator: can't allocate memory")
NAN_MARKERS = ("FAIL", "loss is nan", "nan loss")


def _classify(returncode: int | None, timed_out: bool, tail: list[str], result_path: Path, limit: float) -> RunResult:
    text = "\n".join(tail)
    error_tail = "\n".join(tail[-15:])
    summary = parse_summary(tail)
    if timed_out:
        return RunResult(status="timeout", summary=summary, error_tail=error_tail,
                         reason=f"still running after {limit:.0f}s: stopped (SIGTERM, then SIGKILL)")
    harness = _read_result(result_path)
    if returncode == 0 and harness is not None:
        val = harness.get("val_bpb")
        if val is None or not math.isfinite(val):
            return RunResult(status="nan", summary=summary, harness=harness, reason=f"val_bpb is {val}")
        return RunResult(status="ok", val_bpb=val, test_bpb=harness.get("test_bpb"), summary=summary,
                         harness=harness, reason="ok")
    if any(m in text for m in OOM_MARKERS) or returncode == -signal.SIGKILL:
        return RunResult(status="oom", summary=summary, error_tail=error_tail,
                         reason="out of memory" + (" (killed by the OS)" if returncode == -signal.SIGKILL else ""))
    if any(line.strip() in NAN_MARKERS or "nan" in line.lower().split() for line in tail[-5:]):
        return RunResult(status="nan", summary=summary, error_tail=error_tail, reason="loss became NaN or exploded")
    if returncode == 0:
        return RunResult(status="crash", summary=summary, error_tail=error_tail,
                         reason="train.py finished without the harness's evaluation (call evaluate_bpb)")
    last = next((line for line in reversed(tail) if line.strip()), "")
    return RunResult(status="crash", summary=summary, error_tail=error_tail,
                     reason=f"exit code {returncode}: {last.strip()[:200]}")


def _read_result(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
