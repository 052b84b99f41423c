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

from autoresearch.harness.channel import ANSWER_ENV, CHANNEL_ENV
from autoresearch.harness.constants import SETTINGS_ENV
from autoresearch.settings import CACHE_ENV, WORKSPACE_ENV, Settings, cache_dir

STATUSES = ("ok", "crash", "timeout", "nan", "oom", "rejected")
TERM_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL
STARTUP_ALLOWANCE = 120.0  # start-up, compilation and evaluation on top of the training budget
TAIL_LINES = 30
POLL_SECONDS = 0.25  # how often the watch checks time and memory
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
    compile_cache: Path | None = None  # shared, writable by every experiment of the workspace
    # Asked once val_bpb is measured: score the held-out test split too? (None: always.) Runs in the runner's
    # reader thread while the experiment waits, so it must be quick; train.py never sees it.
    wants_test: Callable[[float], bool] | None = None

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
    test_bpb: float | None = None  # held out: never shown to an agent; None when the runner did not want it
    test_wanted: bool | None = None  # the runner's answer when the harness asked whether to score the test split
    summary: dict[str, float] = field(default_factory=dict)  # what train.py printed (informative only)
    harness: dict[str, float] = field(default_factory=dict)  # the harness's full result
    wall_seconds: float = 0.0
    training_seconds: float | None = None  # first training batch -> evaluation, by the runner's clock
    eval_seconds: float | None = None  # evaluation start -> exit, by the runner's clock
    returncode: int | None = None
    log_path: Path | None = None
    error_tail: str = ""  # last lines of the log when the run failed
    reason: str = ""  # one line: why this status

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


def scrubbed_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (SECRET_RE.search(k) or k.upper().startswith(SECRET_PREFIXES))}
    env.pop(WORKSPACE_ENV, None)  # an experiment sees its settings, not the workspace (journal, results)
    env.update(extra)
    return env


def run_experiment(exp: Experiment, on_line: Callable[[str], None] | None = None,
                   on_progress: Callable[[Progress], None] | None = None) -> RunResult:
    """Run `exp` to completion or to its limit. Every outcome is a RunResult; nothing here raises for a bad run."""
    run_dir = exp.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tmp").mkdir(exist_ok=True)
    script = run_dir / "train.py"
    script.write_text(exp.source)
    log_path = run_dir / "run.log"
    cache = exp.cache or cache_dir()
    channel_read, channel_write = os.pipe()
    answer_read, answer_write = os.pipe()  # the runner's answers to the harness's questions (see _answer)
    env = scrubbed_env({
        SETTINGS_ENV: json.dumps(asdict(exp.settings)),
        CACHE_ENV: str(cache),
        CHANNEL_ENV: str(channel_write),
        ANSWER_ENV: str(answer_read),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(run_dir / "tmp"),
        **_cache_env(exp),
    })
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    watch = _Watch(exp)
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen([*launcher(exp, cache), sys.executable, str(script)], cwd=run_dir, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, bufsize=1, start_new_session=True, errors="replace",
                                    pass_fds=(channel_write, answer_read))
        except OSError as e:
            for fd in (channel_read, channel_write, answer_read, answer_write):
                os.close(fd)
            return RunResult(status="crash", log_path=log_path, reason=f"could not start python: {e}")
        os.close(channel_write)  # the child holds the only write end: EOF on the channel means it is gone
        os.close(answer_read)
        (run_dir / PGID_FILE).write_text(str(proc.pid))  # lets a resumed orchestrator stop an orphaned run
        readers = [threading.Thread(target=_pump, args=(proc, log, tail, on_line, on_progress), daemon=True),
                   threading.Thread(target=watch.read_channel, args=(channel_read, answer_write), daemon=True)]
        for t in readers:
            t.start()
        watch.wait(proc)
        leftovers = _kill_leftovers(proc)  # children the run left behind (strays, compile workers) go too
        for t in readers:
            t.join(timeout=5)
    (run_dir / PGID_FILE).unlink(missing_ok=True)
    result = _classify(proc.returncode, watch, list(tail), exp, leftovers)
    result.wall_seconds = time.monotonic() - watch.t0
    result.returncode = proc.returncode
    result.log_path = log_path
    return result


def launcher(exp: Experiment, cache: Path) -> list[str]:
    """The sandbox launcher in front of `python train.py` (empty when the workspace turns the sandbox off)."""
    if not exp.settings.sandbox:
        return []
    try:
        from autoresearch.run import sandbox
    except ImportError:
        return []
    from autoresearch.harness.constants import prepared_dir

    writable = [str(exp.run_dir)]
    if exp.compile_cache is not None:
        exp.compile_cache.mkdir(parents=True, exist_ok=True)
        writable.append(str(exp.compile_cache))
    policy = sandbox.Policy(network=False, read_paths=[str(prepared_dir(exp.settings, cache))],
                            write_paths=writable, die_with_parent=True)
    return sandbox.launcher_argv(policy)


def _cache_env(exp: Experiment) -> dict[str, str]:
    """torch.compile, triton and CUDA caches shared by the experiments of a workspace (compiling is slow)."""
    if exp.compile_cache is None:
        return {}
    from autoresearch.run import sandbox

    return sandbox.cache_env(exp.compile_cache)


def protect_orchestrator() -> None:
    """Once per orchestrator: experiments may not read its environment (API keys) through /proc, and processes
    that escape an experiment's process group are re-parented to us, so they can be found and killed."""
    try:
        from autoresearch.run import sandbox
    except ImportError:
        return
    sandbox.protect_orchestrator()
    sandbox.enable_subreaper()


class _Watch:
    """Waits for the experiment, enforcing from outside: the hard limit, the training time, the memory limit."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.t0 = time.monotonic()
        self.events: list[tuple[float, dict]] = []  # (seconds since start, event), by the runner's clock
        self.stopped_for: str = ""  # timeout | train_time | memory
        self.peak_rss_mb = 0.0
        self.answers: list[tuple[object, bool]] = []  # (val_bpb asked about, whether the test split was wanted)

    def read_channel(self, fd: int, answer_fd: int) -> None:
        """Record the harness's events; answer its questions on `answer_fd` (closed here, when the channel ends)."""
        try:
            with os.fdopen(fd, "rb") as f:
                for raw in f:
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        self.events.append((time.monotonic() - self.t0, event))
                        if event.get("event") == "ask_test":
                            self.answers.append(_answer(self.exp, event, answer_fd))
        finally:
            os.close(answer_fd)

    def first(self, name: str) -> float | None:
        return next((t for t, e in self.events if e.get("event") == name), None)

    def last(self, name: str) -> dict | None:
        return next((e for _, e in reversed(self.events) if e.get("event") == name), None)

    @property
    def training_seconds(self) -> float | None:
        """From the second training batch (the first, if there is only one) to the start of evaluation (or to
        now), by our clock: what happens before the second batch is start-up and compilation."""
        start = self.first("train_clock")
        if start is None:
            start = self.first("train_start")
        if start is None:
            return None
        end = self.first("eval_start")
        return (end if end is not None else time.monotonic() - self.t0) - start

    def wait(self, proc: subprocess.Popen) -> None:
        settings = self.exp.settings
        train_limit = settings.time_budget + settings.allowance
        memory_limit = settings.memory_limit
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                return
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - self.t0
            if elapsed > self.exp.limit:
                self.stopped_for = "timeout"
            elif self.first("eval_start") is None and (self.training_seconds or 0) > train_limit:
                self.stopped_for = "train_time"
            elif memory_limit and (rss := _tree_rss_mb(proc.pid)) > memory_limit:
                self.peak_rss_mb = rss
                self.stopped_for = "memory"
            if self.stopped_for:
                _stop(proc, polite=self.stopped_for != "memory")
                return


def _answer(exp: Experiment, event: dict, answer_fd: int) -> tuple[object, bool]:
    """Answer the harness's question "score the held-out test split?" from `exp.wants_test`, and return what was
    asked and answered: the answer the runner holds the run to (see _classify), whatever reaches the harness."""
    val = event.get("val_bpb")
    want = True
    if exp.wants_test is not None and isinstance(val, float) and math.isfinite(val):
        try:
            want = bool(exp.wants_test(val))
        except Exception:  # noqa: BLE001 - a failing callback must not lose the run: score the test split
            want = True
    try:
        os.write(answer_fd, (json.dumps({"test": want}) + "\n").encode())
    except OSError:
        pass  # the experiment is gone; it scores the test split by default, and the runner knows what it said
    return val, want


def _stop(proc: subprocess.Popen, polite: bool) -> None:
    """SIGTERM the group and give it a grace period (unless memory is at stake), then SIGKILL."""
    if polite:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=TERM_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _kill_leftovers(proc: subprocess.Popen) -> int:
    """Kill whatever the run left running: its process group, and descendants that left the group."""
    survivors = [pid for pid in _group_members(proc.pid) if pid != proc.pid]
    _signal_group(proc, signal.SIGKILL)
    try:
        from autoresearch.run import sandbox

        survivors += sandbox.kill_descendants()
    except (ImportError, AttributeError):
        pass
    return len(set(survivors))


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of the experiment and everything it started, including processes that left its group."""
    try:
        from autoresearch.run import sandbox
    except ImportError:
        sandbox = None
    total_kb = 0
    for member in _group_members(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        except (OSError, ValueError):
            continue
    return max(total_kb / 1024, sandbox.tree_rss_mb(pid) if sandbox else 0.0)


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


def _classify(returncode: int | None, watch: _Watch, tail: list[str], exp: Experiment, leftovers: int) -> RunResult:
    text = "\n".join(tail)
    summary = parse_summary(tail)
    harness = watch.last("result") or {}
    harness.pop("event", None)
    violation = watch.last("violation")
    settings = exp.settings
    trained = watch.training_seconds
    r = RunResult(status="crash", summary=summary, harness=harness, error_tail="\n".join(tail[-15:]),
                  training_seconds=trained)
    if watch.answers:
        r.test_wanted = watch.answers[-1][1]
    eval_start = watch.first("eval_start")
    if eval_start is not None:
        r.eval_seconds = (time.monotonic() - watch.t0) - eval_start
    limit = settings.time_budget + settings.allowance

    def verdict(status: str, reason: str) -> RunResult:
        r.status, r.reason = status, reason
        if status != "ok":
            r.val_bpb = r.test_bpb = None
        return r

    if watch.stopped_for == "memory":
        return verdict("oom", f"used {watch.peak_rss_mb:,.0f} MB, over the memory limit of "
                              f"{settings.memory_limit:,} MB: stopped")
    if watch.stopped_for == "timeout":
        return verdict("timeout", f"still running after {exp.limit:.0f}s: stopped (SIGTERM, then SIGKILL)")
    if watch.stopped_for == "train_time" or (trained is not None and trained > limit):
        return verdict("timeout", f"trained for {trained:.0f}s by the runner's clock, past the budget of "
                                  f"{settings.time_budget:g}s + {settings.allowance:g}s allowance")
    if violation is not None:
        return verdict("rejected", f"{violation.get('reason', 'broke a rule of the harness')}")
    if returncode == 0 and harness:
        used = harness.get("settings") or {}
        expected = {k: getattr(settings, k) for k in used}
        if not used or used != expected:
            return verdict("rejected", f"the harness ran with settings {used}, not the workspace's {expected}")
        val = harness.get("val_bpb")
        if val is None or not math.isfinite(val):
            return verdict("nan", f"val_bpb is {val}")
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
        if sum(1 for _, e in watch.events if e.get("event") == "result") > 1:
            return verdict("rejected", "more than one result on the harness's channel: evaluate once, at the end")
        r.val_bpb, r.test_bpb = val, harness.get("test_bpb")
        return verdict("ok", "ok")
    if returncode == 0:
        return verdict("rejected", "train.py finished without the harness's evaluation: call evaluate_bpb(model, "
                                   "tokenizer, batch_size) at the end")
    if any(m in text for m in OOM_MARKERS) or returncode == -signal.SIGKILL:
        return verdict("oom", "out of memory" + (" (killed by the OS)" if returncode == -signal.SIGKILL else ""))
    if any(line.strip() in NAN_MARKERS or "nan" in line.lower().split() for line in tail[-5:]):
        return verdict("nan", "loss became NaN or exploded")
    last = next((line for line in reversed(tail) if line.strip()), "")
    return verdict("crash", f"exit code {returncode}: {last.strip()[:200]}")
