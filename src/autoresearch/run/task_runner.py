"""One experiment of a task -> (status, reason, Evaluation). The experiment runs in the same sandbox as train.py:
a fresh copy of the workspace's fixed (never hidden) files plus the proposal's editable files, writable only there
and in its output and tmp directories, no network, private /tmp and /dev/shm, the judge's copy covered. What it
prints goes to run.log and decides nothing: the evaluator (run/evaluator.py) gives the figure.

Not yet wired into the loop (run/supervisor.py still runs the GPT task): see the branch's report."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from autoresearch.harness.budget import BUDGET_ENV
from autoresearch.run.evaluator import Evaluation, evaluate
from autoresearch.task.declaration import OUTPUT_ENV, Task


def run_task(task: Task, workspace: Path, files: dict[str, str], run_dir: Path, seed: int = 0,
             sandbox: bool = True, holdout: bool = False) -> tuple[str, str, Evaluation, Evaluation | None]:
    """-> (status, reason, validation evaluation, holdout evaluation or None)."""
    refused = [f for f in files if not task.is_editable(f)]
    if refused:
        return "rejected", (f"the proposal changes fixed file(s) {', '.join(sorted(refused))}: only "
                            f"{', '.join(task.editable)} may change"), Evaluation(reason="refused"), None
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

        policy = sb.Policy(network=False, read_paths=[], write_paths=[str(work), str(output), str(tmp)],
                           die_with_parent=True, private_dirs=sb.PRIVATE_DIRS, hidden_paths=[str(task.root)])
        prefix = sb.launcher_argv(policy)
    env = {k: v for k, v in os.environ.items() if k.startswith(("PATH", "LANG", "LC_", "HOME", "PYTHON"))}
    env.update({OUTPUT_ENV: str(output), task.seed_env: str(seed), "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"})
    if task.time_budget:
        env[BUDGET_ENV] = f"{task.time_budget:g}"
    limit = task.timeout
    with open(run_dir / "run.log", "w") as log:
        proc = subprocess.Popen([*prefix, *task.argv(task.command)], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of it survives the run
        except OSError:
            pass
        proc.wait()
    if code is None:
        return "timeout", f"the experiment ran past {limit:g}s", Evaluation(reason="timeout"), None
    if code != 0:
        tail = "\n".join((run_dir / "run.log").read_text(errors="replace").splitlines()[-15:])
        return "crash", f"the experiment exited with {code}:\n{tail}", Evaluation(reason="crash"), None
    val = evaluate(task, workspace, output, task.evaluate, sandbox=sandbox)
    if not val.ok:
        return "crash", val.reason, val, None
    test = evaluate(task, workspace, output, task.holdout, sandbox=sandbox) if holdout and task.holdout else None
    return "ok", "", val, test
