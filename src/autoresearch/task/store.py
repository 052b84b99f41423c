"""`init --task`: a workspace of a task, and the judge's copy that only the evaluator reads.

    DIR/                     git repo, first commit: editable + fixed files, never a hidden one (.gitignore
                             lists them too, so no later commit can carry one)
    DIR/.autoresearch/task/  out of every experiment's and command agent's reach (the sandbox grants neither read
                             nor write there; command agents get .autoresearch/ covered):
        judge/               the fixed files and the hidden ones, as `prepare` left them: the evaluator's cwd
        manifest.json        sha256 of every judge file, checked before every evaluation
        task.json            the declaration as read at init (the workspace's task.toml is only its copy)

`prepare` runs once, in a staging copy of the task (the researcher's own code: not sandboxed), before the
workspace exists; what it leaves is checked (check_files) and then split into the two places above.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from autoresearch import vcs
from autoresearch.task.declaration import Task, TaskError, check_files, load_task
from autoresearch.task.metric import Metric
from autoresearch.task.warnings import evaluator_warnings
from autoresearch.workspace import GITIGNORE, JOURNAL_FILE, RUN_DIR, WorkspaceError  # noqa: F401

TASK_DIR = f"{RUN_DIR}/task"
JUDGE = f"{TASK_DIR}/judge"
MANIFEST = f"{TASK_DIR}/manifest.json"
DECLARATION = f"{TASK_DIR}/task.json"
PREPARE_TIMEOUT = 3600


def judge_dir(workspace: Path) -> Path:
    return Path(workspace) / JUDGE


def is_task_workspace(workspace: Path) -> bool:
    return (Path(workspace) / DECLARATION).is_file()


def init_task_workspace(directory: Path, task_path: Path, settings_toml: str | None = None) -> tuple[Path, list[str]]:
    """Make DIR a workspace of the task at `task_path`. -> (the workspace, warnings about the evaluator).

    Declaration errors are raised before anything is created; if `prepare` fails, or leaves the declared files
    missing, what was created is removed again."""
    task = load_task(task_path)  # raises TaskError before anything exists
    directory = Path(directory).expanduser().resolve()
    if directory.exists() and any(directory.iterdir()):
        raise WorkspaceError(f"{directory} exists and is not empty; pick a new or empty directory (nothing was changed)")
    if directory == task.root or task.root in directory.parents:
        raise WorkspaceError(f"{directory} is inside the task's directory {task.root}; pick a directory outside it")
    existed = directory.exists()
    with tempfile.TemporaryDirectory(prefix="autoresearch-task-") as tmp:
        stage = Path(tmp) / "task"
        _copy(task.root, stage, task.files())
        if task.prepare:
            _prepare(task, stage)
        check_files(task, stage)
        try:
            _lay_out(task, stage, directory, settings_toml)
        except BaseException:
            if existed:
                for child in directory.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            else:
                shutil.rmtree(directory, ignore_errors=True)
            raise
    return directory, evaluator_warnings(task, judge_dir(directory), task.editable_files(directory))


def _prepare(task: Task, stage: Path) -> None:
    try:
        proc = subprocess.run(task.argv(task.prepare), cwd=stage, capture_output=True, text=True,
                              timeout=PREPARE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TaskError(f"{task.source}: [task] prepare: {task.prepare!r} did not run: {e}; fix the command "
                        "(nothing was created)") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise TaskError(f"{task.source}: [task] prepare: {task.prepare!r} exited with {proc.returncode} (nothing "
                        f"was created); fix it and run init again:\n{tail}")


def _lay_out(task: Task, stage: Path, directory: Path, settings_toml: str | None) -> None:
    editable, hidden = task.editable_files(stage), set(task.hidden_files(stage))
    fixed = task.fixed_files(stage)
    directory.mkdir(parents=True, exist_ok=True)
    _copy(stage, directory, [*editable, *(f for f in fixed if f not in hidden)])
    judge = judge_dir(directory)
    _copy(stage, judge, [*fixed, *sorted(hidden)])
    (directory / DECLARATION).write_text(json.dumps(task.to_toml_table(), indent=1))
    (directory / MANIFEST).write_text(json.dumps(manifest(judge), indent=1, sort_keys=True))
    if settings_toml is not None and not (directory / "autoresearch.toml").exists():
        (directory / "autoresearch.toml").write_text(settings_toml)
    ignore = GITIGNORE + "# the task's hidden files: never in a commit\n" + "".join(f"{h}\n" for h in task.hidden)
    (directory / ".gitignore").write_text(ignore)
    vcs.init_repo(directory)
    vcs.commit_all(directory, f"autoresearch init --task {task.name} ({task.metric.describe()})")


def _copy(src: Path, dst: Path, files: list[str]) -> None:
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f, dst / f)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(root: Path) -> dict[str, str]:
    from autoresearch.task.declaration import all_files

    return {f: file_hash(root / f) for f in all_files(root)}


def tampered(workspace: Path) -> list[str]:
    """The judge's files that differ from the manifest written at init: changed, missing or added. [] = intact."""
    try:
        want = json.loads((Path(workspace) / MANIFEST).read_text())
    except (OSError, ValueError):
        return [f"{MANIFEST} (unreadable)"]
    have = manifest(judge_dir(workspace))
    changed = [f"{f} (changed)" for f in sorted(want) if f in have and have[f] != want[f]]
    return changed + [f"{f} (missing)" for f in sorted(set(want) - set(have))] + \
        [f"{f} (added)" for f in sorted(set(have) - set(want))]


def workspace_task(workspace: Path) -> Task:
    """The task of a task workspace, as its declaration was read at init (not the editable copy of task.toml)."""
    workspace = Path(workspace).resolve()
    try:
        d = json.loads((workspace / DECLARATION).read_text())
    except (OSError, ValueError) as e:
        raise TaskError(f"{workspace} is not a task workspace ({DECLARATION}: {e}); make one with "
                        "`autoresearch init DIR --task PATH`") from e
    tuples = {k: tuple(d[k]) for k in ("editable", "readable", "hidden", "allowed_imports")}
    # The real path: on a Ray node .autoresearch/task is a link to the node's unpacked copy (backends/ray_task.py),
    # and the sandbox's grants and covers hold for real paths
    return Task(root=judge_dir(workspace).resolve(), name=d["name"], command=d["command"],
                metric=Metric(d["metric"], d["goal"]),
                evaluate=d["evaluate"], time_budget=d.get("time_budget"), timeout=d["timeout"],
                prepare=d.get("prepare"), holdout=d.get("holdout"), seed_env=d["seed_env"], program=d["program"],
                source=workspace / DECLARATION, **tuples)


def workspace_metric(workspace: Path) -> Metric:
    """The figure a workspace's runs are judged on: its task's metric, or the GPT task's val_bpb."""
    from autoresearch.task.metric import BPB

    return workspace_task(workspace).metric if is_task_workspace(workspace) else BPB
