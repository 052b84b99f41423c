"""One experiment of a task -> RunResult (the loop's value) or (status, reason, Evaluation) (run_task).

The experiment runs in the same sandbox as train.py: a fresh copy of the workspace's fixed (never hidden) files
plus the proposal's editable files, writable only there and in its output and tmp directories, no network,
private /tmp and /dev/shm, the judge's copy covered. What it prints goes to run.log and decides nothing: the
evaluator (run/evaluator.py) gives the figure, and the holdout evaluation, where the loop wants it, the test one.

The clock is the runner's: with a time budget, a script that marks the start of training (harness/budget.py's
start(), on the descriptor in AUTORESEARCH_BUDGET_FD) is stopped budget + grace after that mark, one that never
marks it budget + grace after launch; `timeout` caps the whole process either way.

RunResult.val_bpb and test_bpb carry the task's metric (the field names are the GPT task's, kept so that one loop
and one journal serve every task); the metric's name and goal travel with the run (loop/ledger.py).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from autoresearch.harness.budget import BUDGET_ENV, BUDGET_FD_ENV
from autoresearch.run.evaluator import Evaluation, evaluate
from autoresearch.run.proctree import tree_rss_mb
from autoresearch.run.result import THREAD_VARS, Experiment, RunResult, parse_summary
from autoresearch.task.declaration import GRACE_SECONDS, OUTPUT_ENV, Task
from autoresearch.task.store import workspace_task
from autoresearch.workspace import read_constants

TAIL_LINES = 15
_SEED_SUFFIX = re.compile(r"-s(?:eed)?(\d+)$")  # run directories of seed repeats: 0003-0-seed1, best-s2


def refused(task: Task, files: dict[str, str]) -> str:
    """Why a proposal may not run ('' when it may): it changes a file that is not the agent's."""
    bad = sorted(f for f in files if not task.is_editable(f))
    return (f"the proposal changes fixed file(s) {', '.join(bad)}: only {', '.join(task.editable)} may change "
            "(the evaluator, its data and every other file are fixed)") if bad else ""


def run_task(task: Task, workspace: Path, files: dict[str, str], run_dir: Path, seed: int = 0,
             sandbox: bool = True, holdout: bool = False) -> tuple[str, str, Evaluation, Evaluation | None]:
    """-> (status, reason, validation evaluation, holdout evaluation or None)."""
    r = run_task_files(task, workspace, files, run_dir, seed=seed, sandbox=sandbox,
                       wants_test=(lambda v: True) if holdout else (lambda v: False))
    return r.status, r.reason, Evaluation(value=r.val_bpb, figures=r.harness, reason=r.reason or ""), (
        Evaluation(value=r.test_bpb) if r.test_bpb is not None else None)


def run_task_experiment(exp: Experiment, on_line: Callable[[str], None] | None = None) -> RunResult:
    """The loop's entry (run/supervisor.py sends a task workspace's experiments here): exp.source is train.py,
    exp.files the other editable files."""
    task = workspace_task(exp.workspace)
    timeout = min(task.timeout, exp.timeout) if exp.timeout else task.timeout
    return run_task_files(task, exp.workspace, experiment_files(task, exp), exp.run_dir, seed=seed_of(exp),
                          sandbox=exp.settings.sandbox, wants_test=exp.wants_test, on_line=on_line,
                          env=dict(exp.env), timeout=timeout, cover=exp.hidden)


def experiment_files(task: Task, exp: Experiment) -> dict[str, str]:
    """Every editable file of the experiment by name, its main script (train.py, else the first editable file)
    holding exp.source. The other editable files are as the experiment's commit holds them (exp.files), and no
    other: a file an agent left in the workspace's own tree, which no commit holds, must not run. A single run
    (`autoresearch train`) takes them as the workspace holds them. A name that is not editable is refused by
    run_task_files."""
    editable = task.editable_files(exp.workspace)
    main = main_script(editable)
    files = ({f: (exp.workspace / f).read_text() for f in editable if f != main} if exp.files is None
             else dict(exp.files))
    return {**files, main: exp.source}


def main_script(editable: list[str]) -> str:
    """The editable file an experiment's source is: train.py, else the first editable file."""
    return "train.py" if "train.py" in editable or not editable else editable[0]


def seed_of(exp: Experiment) -> int:
    """The seed of a run: the source's SEED constant (the loop's seed repeats move it), else the repeat's number."""
    seed = read_constants(exp.source).get("SEED")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    m = _SEED_SUFFIX.search(exp.run_dir.name)
    return int(m.group(1)) if m else 0


def run_task_files(task: Task, workspace: Path, files: dict[str, str], run_dir: Path, seed: int = 0,
                   sandbox: bool = True, wants_test: Callable[[float], bool] | None = None,
                   on_line: Callable[[str], None] | None = None, env: dict[str, str] | None = None,
                   timeout: float | None = None, cover: tuple[str, ...] = ()) -> RunResult:
    """`cover`: more paths the experiment's sandbox covers, beside the judge's copy (on a Ray node: every copy of
    the node's, and the orchestrator's own)."""
    t0 = time.monotonic()
    why = refused(task, files)
    if why:
        return RunResult(status="rejected", reason=why, node=socket.gethostname())
    work, output, tmp = run_dir / "work", run_dir / "output", run_dir / "tmp"
    for d in (work, output, tmp):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    hidden = set(task.hidden_files())
    for f in task.fixed_files():
        if f not in hidden:
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(task.root / f, work / f)
    for f, text in files.items():
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        (work / f).write_text(text)
    prefix: list[str] = []
    if sandbox:
        from autoresearch.run import sandbox as sb

        # A PID namespace of its own: when the script's launcher goes, every process it started goes with it
        policy = sb.Policy(network=False, read_paths=[], write_paths=[str(work), str(output), str(tmp)],
                           die_with_parent=True, private_dirs=sb.PRIVATE_DIRS, private_pids=True,
                           hidden_paths=[str(task.root), *cover])
        prefix = sb.launcher_argv(policy)
    mark_read, mark_write = os.pipe()
    # The user's thread counts go along, as to a GPT run (a CPU worker's share comes in `env`, after them)
    child_env = {k: v for k, v in os.environ.items()
                 if k.startswith(("PATH", "LANG", "LC_", "HOME", "PYTHON")) or k in THREAD_VARS}
    child_env.update(env or {})
    child_env.update({OUTPUT_ENV: str(output), task.seed_env: str(seed), "TMPDIR": str(tmp),
                      "PYTHONUNBUFFERED": "1", BUDGET_FD_ENV: str(mark_write)})
    if task.time_budget:
        child_env[BUDGET_ENV] = f"{task.time_budget:g}"
    limit = timeout or task.timeout
    log_path = run_dir / "run.log"
    others = _descendants()  # what runs beside this experiment already: never its leftovers
    lines: list[str] = []
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen([*prefix, *task.argv(task.command)], cwd=work, env=child_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, text=True, errors="replace", bufsize=1,
                                    pass_fds=(mark_write,))
        except OSError as e:
            os.close(mark_read)
            os.close(mark_write)
            return RunResult(status="crash", reason=f"the task's command could not start ({task.command!r}): {e}",
                             log_path=log_path, node=socket.gethostname())
        os.close(mark_write)
        reader = threading.Thread(target=_pump, args=(proc, log, lines, on_line), daemon=True)
        reader.start()
        code, started, why, peak_mb = _wait(proc, mark_read, t0, limit, task.time_budget)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of it survives the run
        except OSError:
            pass
        proc.wait()
        _kill_escaped(others)  # a process that left the group (setsid) could change the output under the evaluator
        reader.join(timeout=30)
    os.close(mark_read)
    ended = time.monotonic()
    timing = {"wall_seconds": ended - t0, "startup_seconds": (started - t0) if started else None,
              "training_seconds": ended - (started or t0), "log_path": log_path, "returncode": code,
              "summary": parse_summary(lines), "node": socket.gethostname()}
    tail = "\n".join(lines[-TAIL_LINES:])
    if code is None:
        return RunResult(status="timeout", reason=why, error_tail=tail, **timing)
    if code != 0:
        return RunResult(status="crash", reason=f"the experiment exited with {code}", error_tail=tail, **timing)
    val = evaluate(task, workspace, output, task.evaluate, sandbox=sandbox)
    if not val.ok:
        return RunResult(status="crash", reason=val.reason, error_tail=val.reason,
                         **{**timing, "wall_seconds": time.monotonic() - t0})
    test = None
    if task.holdout and (wants_test is None or wants_test(val.value)):
        test = evaluate(task, workspace, output, task.holdout, sandbox=sandbox)
    figures = {**val.figures, **({f"holdout_{k}": v for k, v in test.figures.items()} if test else {}),
               "peak_memory_mb": peak_mb}  # the runner's measurement (RunResult.memory_gb), whatever was printed
    timing["wall_seconds"] = time.monotonic() - t0
    return RunResult(status="ok", val_bpb=val.value, test_bpb=test.value if test and test.ok else None,
                     test_wanted=test is not None, harness=figures, eval_seconds=time.monotonic() - ended, **timing)


def _descendants() -> list[int]:
    try:
        from autoresearch.run import sandbox as sb
    except ImportError:
        return []
    return sb.descendants(os.getpid())


def _kill_escaped(spare: list[int]) -> None:
    """Kill the experiment's processes that left its process group: ours as their subreaper (the worker process
    is one), or hidden in its PID namespace, which died with the launcher."""
    try:
        from autoresearch.run import sandbox as sb
    except ImportError:
        return
    sb.kill_descendants(spare=spare)


def _wait(proc: subprocess.Popen, marks: int, t0: float, timeout: float,
          budget: float | None) -> tuple[int | None, float | None, str, float]:
    """Wait for the script: -> (exit code or None when stopped, when training started, why it was stopped, the
    peak resident memory of its process tree in MiB, sampled every 0.2 s: what results.tsv's memory_gb shows)."""
    started: float | None = None
    listening = True
    peak = 0.0
    while True:
        peak = max(peak, tree_rss_mb(proc.pid))
        code = proc.poll()
        if code is not None:
            return code, started, "", peak
        now = time.monotonic()
        if now - t0 > timeout:
            return None, started, f"the experiment ran past its timeout ({timeout:g}s)", peak
        if budget and now - (started or t0) > budget + GRACE_SECONDS:
            since = "after training started" if started else "after launch (it never called budget.start())"
            return None, started, (f"the experiment ran past its time budget ({budget:g}s + {GRACE_SECONDS:g}s "
                                   f"grace {since}): stop training when budget.over() is True"), peak
        if not listening:
            time.sleep(0.2)
            continue
        ready, _, _ = select.select([marks], [], [], 0.2)
        if ready:
            listening = False  # the mark, or the end of the pipe: nothing more to hear either way
            if os.read(marks, 64):
                started = time.monotonic()


def _pump(proc: subprocess.Popen, log, lines: list[str], on_line) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        line = line.rstrip("\n")
        lines.append(line)
        del lines[:-200]
        if on_line:
            try:
                on_line(line)
            except Exception:  # noqa: BLE001 - a live view's error must not stop the run
                pass
