"""One experiment in a subprocess -> RunResult. Never raises for a failed run.

An experiment is a value (the train.py source plus the workspace it is measured in) so it could be shipped to
another machine. The runner writes the source into the experiment's own directory, runs it there in a new
process group with a scrubbed environment, streams its output to a log (and to a callback for live views),
enforces the time limits from outside, and takes the official metrics from the harness's channel only.

The clock has four phases, all timed by the runner from the harness's marks (harness/meter.py):
- start-up, launch -> the first training batch: imports, data, building the model. Generous
  (settings.startup_seconds): a busy machine is slow, and nothing trains without a batch.
- warm-up, the first batch -> timed training (`train_clock`, when the first optimizer step returns): the first
  forward/backward and optimizer step compile here, untimed. At most settings.warmup_seconds: then the clock
  starts anyway, so the first few batches cannot be trained on for free for longer than a cold compile takes.
- training, -> `eval_start`: the budget plus the allowance (settings.training_limit).
- evaluation, `eval_start` -> exit: derived from the evaluation's tokens and the evaluation speed measured on
  this workspace (never from this run's own figures, which it could shape), with a generous floor.
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
from autoresearch.settings import CACHE_ENV, TOKEN_MODE_CAP, WORKSPACE_ENV, Settings, cache_dir

STATUSES = ("ok", "crash", "timeout", "nan", "oom", "rejected")
TERM_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL
EVAL_FLOOR_SECONDS = 180.0  # evaluation limit: this much, plus EVAL_FACTOR x the expected evaluation time
EVAL_FACTOR = 5.0
TAIL_LINES = 30
READER_JOIN_SECONDS = 60.0  # after the run ends, for its output and channel to be read to the end
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
    timeout: float | None = None  # an overall wall-clock limit on top of the phase limits (None: phases only)
    cache: Path | None = None
    # The seed of the compile cache (run/compile_cache.py): copied into the run's own private cache, which is
    # deleted after the run; the run can neither read nor write the seed itself. None: no cache settings.
    compile_cache: Path | None = None
    fills_compile_cache: bool = False  # a human-written source: its private cache becomes the seed if it succeeds
    eval_rate: float | None = None  # evaluation tokens/s measured on this workspace (the slowest recent), if known
    # Asked once val_bpb is measured: score the held-out test split too? (None: always.) Runs in the runner's
    # reader thread while the experiment waits, so it must be quick; train.py never sees it.
    wants_test: Callable[[float], bool] | None = None


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
        **_allocator_env(),
    })
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    others = _descendants()  # what the orchestrator runs already (a dashboard, other jobs): never the run's leftovers
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
        leftovers = _kill_leftovers(proc, spare=others)  # what the run left behind (strays, compile workers) goes
        for t in readers:  # EOF is near: every write end died with the run. A busy machine can still be slow
            t.join(timeout=READER_JOIN_SECONDS)  # to deliver the last lines, the result among them
    (run_dir / PGID_FILE).unlink(missing_ok=True)
    tail_lines = list(tail)
    try:
        result = _classify(proc.returncode, watch, tail_lines, exp, leftovers)
    except Exception as e:  # noqa: BLE001 - a malformed message from the run must not take the orchestrator down
        result = RunResult(status="rejected", error_tail="\n".join(tail_lines[-15:]),
                           reason=f"the run sent the runner a malformed message ({type(e).__name__}: {e})")
    result.wall_seconds = time.monotonic() - watch.t0
    result.returncode = proc.returncode
    result.log_path = log_path
    _finish_compile_cache(exp, result)
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

    writable = [str(exp.run_dir)]  # the private compile cache included; never the seed
    policy = sandbox.Policy(network=False, read_paths=[str(prepared_dir(exp.settings, cache))],
                            write_paths=writable, die_with_parent=True)
    return sandbox.launcher_argv(policy)


def _cache_env(exp: Experiment) -> dict[str, str]:
    """torch.compile, triton and CUDA caches in the run's private copy of the seed (compiling is slow)."""
    if exp.compile_cache is None:
        return {}
    from autoresearch.run import compile_cache, sandbox

    private = compile_cache.private_dir(exp.run_dir)
    compile_cache.seed_private(exp.compile_cache, private)
    return sandbox.cache_env(private)


def _finish_compile_cache(exp: Experiment, result: RunResult) -> None:
    """The private cache goes; a successful human-written run's replaces the seed first."""
    if exp.compile_cache is None:
        return
    from autoresearch.run import compile_cache

    private = compile_cache.private_dir(exp.run_dir)
    if exp.fills_compile_cache and result.ok:
        compile_cache.publish(private, exp.compile_cache)
    compile_cache.discard(private)


def _allocator_env() -> dict[str, str]:
    """Expandable segments for the CUDA caching allocator (as the original sets): less fragmentation, so a model
    near the memory limit fits. A user's own allocator settings win."""
    if os.environ.get("PYTORCH_ALLOC_CONF") or os.environ.get("PYTORCH_CUDA_ALLOC_CONF"):
        return {}
    return {"PYTORCH_ALLOC_CONF": "expandable_segments:True"}


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
    """Waits for the experiment, enforcing from outside: the limit of each phase, and the memory limit."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.t0 = time.monotonic()
        self.events: list[tuple[float, dict]] = []  # (seconds since start, event), by the runner's clock
        self.totals: dict = {}  # the training meter's latest running totals (batches, tokens, steps)
        self.samples: list[tuple[float, int]] = []  # (seconds since start, tokens served): the meter's reports
        self.stopped_for: str = ""  # startup | train_time | eval | timeout | memory
        self.peak_rss_mb = 0.0
        self.eval_limit: float | None = None
        self.expected_eval: float | None = None
        self.answers: list[tuple[object, bool]] = []  # (val_bpb asked about, whether the test split was wanted)
        self.miscount = ""  # the meter's totals went down or negative: they cannot be trusted

    def read_channel(self, fd: int, answer_fd: int) -> None:
        """Record the harness's events; answer its questions on `answer_fd` (closed here, when the channel ends)."""
        try:
            with os.fdopen(fd, "rb") as f:
                for raw in f:
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    if event.get("event") in ("train_batch", "train_clock", "eval_start") and "tokens" in event:
                        tokens = int(event["tokens"])
                        if tokens < max(0, self.totals.get("tokens", 0)):
                            self.miscount = f"the training token count went from {self.totals['tokens']} to {tokens}"
                        self.totals = {k: event[k] for k in ("batches", "tokens", "steps") if k in event}
                        self.samples.append((time.monotonic() - self.t0, tokens))
                    if event.get("event") != "train_batch":  # running totals are many: keep the latest only
                        self.events.append((time.monotonic() - self.t0, event))
                    if event.get("event") == "ask_test":
                        self.answers.append(_answer(self.exp, event, answer_fd))
        finally:
            os.close(answer_fd)

    def first(self, name: str) -> float | None:
        return next((t for t, e in self.events if e.get("event") == name), None)

    def last(self, name: str) -> dict | None:
        return next((e for _, e in reversed(self.events) if e.get("event") == name), None)

    def clock_at(self, elapsed: float) -> float | None:
        """When timed training began, as known at `elapsed`: the `train_clock` mark (the first optimizer step's
        end, or the batch cap), but no later than warmup_seconds after the first batch; a run that has not
        reached either yet is provisionally clocked from its first batch."""
        first_batch = self.first("train_start")
        mark = self.first("train_clock")
        if first_batch is None:
            return mark
        cap = first_batch + self.exp.settings.warmup_seconds
        if mark is not None:
            return min(mark, cap)
        end = self.first("eval_start")
        return cap if (end if end is not None else elapsed) > cap else first_batch

    def clocked(self, elapsed: float) -> bool:
        """Whether timed training has started for sure (not only provisionally)."""
        start = self.clock_at(elapsed)
        return start is not None and (self.first("train_clock") is not None or start != self.first("train_start"))

    @property
    def clock_start(self) -> float | None:
        return self.clock_at(time.monotonic() - self.t0)

    @property
    def training_seconds(self) -> float | None:
        start = self.clock_start
        if start is None:
            return None
        end = self.first("eval_start")
        return (end if end is not None else time.monotonic() - self.t0) - start

    @property
    def timed_tokens(self) -> int | None:
        """Training tokens served while the clock ran (the meter reports every half second)."""
        start = self.clock_start
        if "tokens" not in self.totals or start is None:
            return None
        before = [tokens for t, tokens in self.samples if t <= start]
        return int(self.totals["tokens"]) - (before[-1] if before else 0)

    @property
    def tokens_per_second(self) -> float | None:
        """Training speed while the clock ran; None for a run that never reached timed training (no speed to
        compare: a single batch scored at once, say)."""
        if not self.clocked(time.monotonic() - self.t0):
            return None
        seconds, tokens = self.training_seconds, self.timed_tokens
        return tokens / seconds if tokens and seconds else None

    def _eval_limit(self) -> float:
        """Limit of the evaluation phase: a floor, plus a multiple of the time the evaluation's tokens take at the
        evaluation speed measured on this workspace (the slowest of recent runs), or the budget before any. Never
        from this run's own figures: a run chooses how many tokens it is served, so it could look slow and buy
        itself hours of evaluation."""
        s = self.exp.settings
        tokens = 2 * s.eval_tokens  # val and the held-out test split
        rate = self.exp.eval_rate
        self.expected_eval = tokens / rate if rate else max(60.0, s.time_budget)
        return EVAL_FLOOR_SECONDS + EVAL_FACTOR * self.expected_eval

    def over_limit(self, elapsed: float) -> str:
        """The phase whose limit the run has passed ('' if none)."""
        s = self.exp.settings
        if self.exp.timeout is not None and elapsed > self.exp.timeout:
            return "timeout"
        eval_start = self.first("eval_start")
        if eval_start is not None:
            if self.eval_limit is None:
                self.eval_limit = self._eval_limit()
            return "eval" if elapsed - eval_start > self.eval_limit else ""
        if self.clocked(elapsed):
            return "train_time" if elapsed - self.clock_at(elapsed) > s.training_limit else ""
        if self.first("train_start") is None:  # after the first batch, the warm-up window starts the clock
            return "startup" if elapsed > s.startup_seconds else ""
        return ""

    def wait(self, proc: subprocess.Popen) -> None:
        memory_limit = self.exp.settings.memory_limit
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                return
            except subprocess.TimeoutExpired:
                pass
            self.stopped_for = self.over_limit(time.monotonic() - self.t0)
            if not self.stopped_for and memory_limit and (rss := _tree_rss_mb(proc.pid)) > memory_limit:
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


def _descendants() -> list[int]:
    try:
        from autoresearch.run import sandbox
    except ImportError:
        return []
    return sandbox.descendants(os.getpid())


def _kill_leftovers(proc: subprocess.Popen, spare: list[int]) -> int:
    """Kill whatever the run left running: its process group, and descendants of ours that left the group (an
    escaped process is re-parented to us, the subreaper). Processes that were ours before the run are spared."""
    survivors = [pid for pid in _group_members(proc.pid) if pid != proc.pid]
    _signal_group(proc, signal.SIGKILL)
    try:
        from autoresearch.run import sandbox

        survivors += sandbox.kill_descendants(spare=spare)
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
        try:  # what train.py prints is for humans: nothing it prints may stop the log (or fill the pipe)
            if on_line:
                on_line(line)
            if on_progress and (p := parse_progress(line)):
                on_progress(p)
        except Exception:  # noqa: BLE001
            continue


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


OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "MemoryError", "MPS backend out of memory",
               "DefaultCPUAllocator: can't allocate memory")
NAN_MARKERS = ("FAIL", "loss is nan", "nan loss")


def _classify(returncode: int | None, watch: _Watch, tail: list[str], exp: Experiment, leftovers: int) -> RunResult:
    text = "\n".join(tail)
    summary = parse_summary(tail)
    harness = watch.last("result") or {}
    harness.pop("event", None)
    violation = next((e for _, e in watch.events if e.get("event") == "violation"), None)  # the first: the cause
    settings = exp.settings
    trained = watch.training_seconds
    r = RunResult(status="crash", summary=summary, harness=harness, error_tail="\n".join(tail[-15:]),
                  training_seconds=trained, startup_seconds=watch.clock_start,
                  steps=watch.totals.get("steps"), train_tokens=watch.totals.get("tokens"),
                  tokens_per_second=watch.tokens_per_second)
    if watch.answers:
        r.test_wanted = watch.answers[-1][1]
    eval_start = watch.first("eval_start")
    if eval_start is not None:
        r.eval_seconds = (time.monotonic() - watch.t0) - eval_start
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
        cap = (f"{TOKEN_MODE_CAP} x the time budget of {settings.time_budget:g}s (a token budget of {settings.token_budget:,} "
               "ends training; the time is only a cap)" if settings.token_budget else
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
        used = harness.get("settings") or {}
        expected = {k: getattr(settings, k, None) for k in used}
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
