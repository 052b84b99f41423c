"""One experiment in a subprocess -> RunResult. Never raises for a failed run.

The runner writes the source into the experiment's own directory, runs it there under the sandbox in a new process
group with a scrubbed environment, streams its output to a log (and to a callback for live views), and enforces
the time limits from outside (run/watch.py). The official figures come from the scorer (run/scorer.py), a second
process the runner starts beside train.py: it alone can read val and test, computes bits per byte from the
logits train.py's process hands it, and reports on a pipe only it holds. Nothing train.py's process writes or
sends decides them (run/verdict.py); what it sends on its own channel (the training meter's marks, its peak
memory) is informative, and can only get a run rejected.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import psutil

from autoresearch.harness.channel import CHANNEL_ENV
from autoresearch.harness.constants import SETTINGS_ENV
from autoresearch.harness.wire import SCORER_ENV
from autoresearch.run.load_meter import LoadMeter
from autoresearch.run.proctree import group_members
from autoresearch.run.result import (  # noqa: F401  (re-exported: what callers import from here)
    STATUSES,
    Experiment,
    Progress,
    RunResult,
    add_point,
    parse_progress,
    parse_summary,
)
from autoresearch.run.secrets import SECRET_PREFIXES, SECRET_RE
from autoresearch.run.verdict import FLOOR_MARGIN, below_floor, classify  # noqa: F401
from autoresearch.run.watch import (  # noqa: F401
    EVAL_FACTOR,
    EVAL_FLOOR_SECONDS,
    POLL_SECONDS,
    TERM_GRACE_SECONDS,
    _signal_group,
    _Watch,
)
from autoresearch.settings import CACHE_ENV, WORKSPACE_ENV, cache_dir

TAIL_LINES = 30
READER_JOIN_SECONDS = 60.0  # after the run ends, for its output and channel to be read to the end
SCORER_EXIT_SECONDS = 30.0  # after the run ends, for the scorer to report and exit
SCORER_LOG = "scorer.log"
PGID_FILE = "pgid"

def scrubbed_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (SECRET_RE.search(k) or k.upper().startswith(SECRET_PREFIXES))}
    env.pop(WORKSPACE_ENV, None)  # an experiment sees its settings, not the workspace (journal, results)
    env.update(extra)
    return env


def run_experiment(exp: Experiment, on_line: Callable[[str], None] | None = None,
                   on_progress: Callable[[Progress], None] | None = None) -> RunResult:
    """Run `exp` to completion or to its limit. Every outcome is a RunResult; nothing here raises for a bad run."""
    from autoresearch.task.store import is_task_workspace

    if is_task_workspace(exp.workspace):  # a task of the researcher's: its command, its evaluator
        from autoresearch.run.task_runner import run_task_experiment

        return run_task_experiment(exp, on_line=on_line)
    run_dir = exp.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tmp").mkdir(exist_ok=True)
    script = run_dir / "train.py"
    script.write_text(exp.source)
    log_path = run_dir / "run.log"
    cache = exp.cache or cache_dir()
    channel_read, channel_write = os.pipe()
    ours, theirs = socket.socketpair()  # train.py's evaluate_bpb <-> the scorer (harness/wire.py)
    env = scrubbed_env({
        SETTINGS_ENV: json.dumps(asdict(exp.settings)),
        CACHE_ENV: str(cache),
        CHANNEL_ENV: str(channel_write),
        SCORER_ENV: str(ours.fileno()),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(run_dir / "tmp"),
        **_cache_env(exp),
        **_allocator_env(),
        **dict(exp.env),
    })
    tail: deque[tuple[float, str]] = deque(maxlen=TAIL_LINES)  # (when it came, line)
    others = _descendants()  # what the orchestrator runs already (a dashboard, other jobs): never the run's leftovers
    watch = _Watch(exp)
    curve: list[dict] = []
    try:
        scorer = _start_scorer(exp, cache, theirs)
    except OSError as e:
        for fd in (channel_read, channel_write):
            os.close(fd)
        ours.close()
        return RunResult(status="crash", log_path=log_path, reason=f"could not start the scorer: {e}")
    finally:
        theirs.close()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen([*launcher(exp, cache), sys.executable, str(script)], cwd=run_dir, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, bufsize=1, start_new_session=True, errors="replace",
                                    pass_fds=(channel_write, ours.fileno()))
        except OSError as e:
            for fd in (channel_read, channel_write):
                os.close(fd)
            ours.close()
            scorer.stop()
            return RunResult(status="crash", log_path=log_path, reason=f"could not start python: {e}")
        os.close(channel_write)  # the child holds the only write end: EOF on the channel means it is gone
        ours.close()  # and the only end of the scorer's socket: the scorer sees EOF when the run is gone
        (run_dir / PGID_FILE).write_text(str(proc.pid))  # lets a resumed orchestrator stop an orphaned run
        readers = [threading.Thread(target=_pump, args=(proc, log, tail, curve, on_line, on_progress), daemon=True),
                   threading.Thread(target=watch.read_channel, args=(channel_read,), daemon=True),
                   threading.Thread(target=watch.read_scorer, args=(scorer.report_fd, scorer.answer_fd), daemon=True)]
        for t in readers:
            t.start()
        meter = LoadMeter(lambda: [proc.pid, scorer.proc.pid],
                          timed=lambda: watch.clocked(time.monotonic() - watch.t0) and watch.eval_at is None).start()
        watch.wait(proc)
        seen = meter.stop()
        leftovers = _kill_leftovers(proc, spare=[*others, scorer.proc.pid])  # strays, compile workers: they go
        scorer.finish()
        for t in readers:  # EOF is near: every write end died with the run. A busy machine can still be slow
            t.join(timeout=READER_JOIN_SECONDS)  # to deliver the last lines, the result among them
    (run_dir / PGID_FILE).unlink(missing_ok=True)
    tail_lines = shown_tail(tail, watch.eval_clock, watch.test_clock)
    try:  # the summary block is read from every line (it decides nothing an agent sees but a refusal)
        result = classify(proc.returncode, watch, tail_lines, exp, leftovers, cache,
                          summary_lines=shown_tail(tail, watch.eval_clock))
    except Exception as e:  # noqa: BLE001 - a malformed message from the run must not take the orchestrator down
        result = RunResult(status="rejected", error_tail="\n".join(tail_lines[-15:]),
                           reason=f"the run sent the runner a malformed message ({type(e).__name__}: {e})")
    result.wall_seconds = time.monotonic() - watch.t0
    result.returncode = proc.returncode
    result.log_path = log_path
    result.curve = curve
    result.node = socket.gethostname()
    if seen is not None:
        result.load, result.load_signals = seen.wait, seen.to_dict()
    _finish_compile_cache(exp, result)
    return result


def launcher(exp: Experiment, cache: Path) -> list[str]:
    """The sandbox launcher in front of `python train.py`. With the sandbox off, one that only makes the run die
    with its parent: a worker killed outright (Ray's force cancel) must not leave train.py running."""
    if not exp.settings.sandbox:
        return dies_with_parent()
    try:
        from autoresearch.run import sandbox
    except ImportError:
        return []
    from autoresearch.harness.constants import prepared_dir

    writable = [str(exp.run_dir)]  # the private compile cache included; never the seed
    policy = sandbox.Policy(network=False, read_paths=training_files(prepared_dir(exp.settings, cache)),
                            write_paths=writable, die_with_parent=True, private_dirs=sandbox.PRIVATE_DIRS)
    return sandbox.launcher_argv(policy)


def dies_with_parent() -> list[str]:
    """A launcher that confines nothing and only sets PR_SET_PDEATHSIG (empty where there is no launcher)."""
    try:
        from autoresearch.run import sandbox
    except ImportError:
        return []
    return sandbox.launcher_argv(sandbox.Policy(network=True, filesystem=False, die_with_parent=True))


TRAINING_FILES = ("tokenizer.pkl", "meta.json", "train.")  # names, or prefixes ending in "."


def training_files(prepared: Path) -> list[str]:
    """What train.py may read of the prepared data: the tokenizer, the meta data and the train split, by name.
    An allow-list of files, not the directory: val, test, the embedded corpus's salt and anything added there
    later stay the scorer's."""
    try:
        names = [p.name for p in prepared.iterdir() if p.is_file()]
    except OSError:
        return []
    return sorted(str(prepared / n) for n in names
                  if any(n == t or (t.endswith(".") and n.startswith(t)) for t in TRAINING_FILES))


class _ScorerProcess:
    """The scorer beside one experiment: its process, and the ends of its report pipe the runner holds."""

    def __init__(self, proc: subprocess.Popen, report_fd: int, answer_fd: int, log) -> None:
        self.proc, self.report_fd, self.answer_fd, self.log = proc, report_fd, answer_fd, log

    def finish(self) -> None:
        """The experiment is gone: the scorer reports what it has and exits (or is stopped)."""
        try:
            self.proc.wait(timeout=SCORER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.stop()
        self.log.close()

    def stop(self) -> None:
        _signal_group(self.proc, signal.SIGKILL)
        self.proc.wait()


def _start_scorer(exp: Experiment, cache: Path, sock: socket.socket) -> _ScorerProcess:
    """Start the scorer under a sandbox of its own: no network, the prepared data read-only, nothing writable. Its
    working directory is the prepared data (no file train.py wrote can be imported: `-P`, and the directory is not
    writable by anyone but `prepare`)."""
    from autoresearch.harness.constants import prepared_dir

    prepared = prepared_dir(exp.settings, cache)
    prefix: list[str] = dies_with_parent()
    if exp.settings.sandbox:
        try:
            from autoresearch.run import sandbox

            policy = sandbox.Policy(network=False, read_paths=[str(prepared)], write_paths=[], die_with_parent=True,
                                    private_dirs=("/dev/shm",))
            prefix = sandbox.launcher_argv(policy)
        except ImportError:
            pass
    report_read, report_write = os.pipe()
    answer_read, answer_write = os.pipe()
    env = scrubbed_env({SETTINGS_ENV: json.dumps(asdict(exp.settings)), CACHE_ENV: str(cache),
                        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **dict(exp.env)})
    log = open(exp.run_dir / SCORER_LOG, "w")  # noqa: SIM115 - closed by finish()
    try:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-P", "-m", "autoresearch.run.scorer", "--socket-fd", str(sock.fileno()),
             "--report-fd", str(report_write), "--answer-fd", str(answer_read),
             *(["--first-answer-limit", f"{exp.first_answer_limit:.3f}"] if exp.first_answer_limit else [])],
            cwd=prepared if prepared.is_dir() else exp.run_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=(sock.fileno(), report_write, answer_read))
    except OSError:
        for fd in (report_read, report_write, answer_read, answer_write):
            os.close(fd)
        log.close()
        raise
    os.close(report_write)
    os.close(answer_read)
    return _ScorerProcess(proc, report_read, answer_write, log)


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


def _descendants() -> list[int]:
    try:
        from autoresearch.run import sandbox
    except ImportError:
        return []
    return sandbox.descendants(os.getpid())


def _kill_leftovers(proc: subprocess.Popen, spare: list[int]) -> int:
    """Kill whatever the run left running: its process group, and descendants of ours that left the group (an
    escaped process is re-parented to us, the subreaper). Processes that were ours before the run are spared."""
    survivors = [p.pid for p in group_members(proc.pid) if p.pid != proc.pid]
    _signal_group(proc, signal.SIGKILL)
    try:
        from autoresearch.run import sandbox

        survivors += sandbox.kill_descendants(spare=spare)
    except (ImportError, AttributeError):
        pass
    return len(set(survivors))


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
    for p in group_members(pgid):
        try:
            if Path(p.cwd()).resolve() == run_dir.resolve():
                p.kill()
                hit += 1
        except (OSError, psutil.Error):
            continue
    path.unlink(missing_ok=True)
    return hit


def shown_tail(tail: deque, eval_clock: float | None, test_clock: float | None = None) -> list[str]:
    """The last lines of output that the records, and so the agents, get. From the moment evaluate_bpb reached the
    scorer, train.py's process holds evaluation rows: what it prints then goes to run.log only (for humans),
    except the summary block's `key: value` lines, or an agent could be shown the validation text in an error
    tail and write it into the next train.py. From the moment the test split is wanted, not even those: the
    process can measure its own loss on the held-out rows and print it as a summary figure."""
    if eval_clock is None:
        return [line for _, line in tail]
    test_clock = math.inf if test_clock is None else test_clock
    out = [line for t, line in tail if t < eval_clock or (t < test_clock and _summary_line(line))]
    if any(t >= eval_clock and not _summary_line(line) for t, line in tail):
        out.append("(what train.py printed during the evaluation is in run.log only: it could hold evaluation data)")
    elif any(t >= test_clock for t, _ in tail):
        out.append("(what train.py printed once the held-out split was served is in run.log only)")
    return out


SUMMARY_NUMBER = re.compile(r"-?\d{1,7}(\.\d{1,6})?")  # a figure, not a string of token ids
SUMMARY_KEYS = frozenset({"val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
                          "total_tokens_M", "num_steps", "num_params_M", "depth"})


def _summary_line(line: str) -> bool:
    """`---`, or a line of the summary block: a known key and a number (no room for text)."""
    if line == "---":
        return True
    key, _, value = line.partition(":")
    return key in SUMMARY_KEYS and bool(SUMMARY_NUMBER.fullmatch(value.strip()))


def _pump(proc: subprocess.Popen, log, tail: deque, curve: list[dict], on_line, on_progress) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        line = line.rstrip("\n")
        tail.append((time.monotonic(), line))
        try:  # what train.py prints is for humans: nothing it prints may stop the log (or fill the pipe)
            if on_line:
                on_line(line)
            if p := parse_progress(line):
                add_point(curve, p)
                if on_progress:
                    on_progress(p)
        except Exception:  # noqa: BLE001
            continue

