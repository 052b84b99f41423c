"""The declaration of a task: `task.toml` (a `[task]` table), or a `[task]` table in autoresearch.toml.

Every key is checked before anything is created; an error names the key and says how to fix it. What a glob
matches is checked twice: the keys a task needs before `prepare` (editable files, the evaluator's scripts) at
load time, what `prepare` may write (readable and hidden data) by check_files() once it has run.
"""

from __future__ import annotations

import fnmatch
import math
import os
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.task.metric import GOALS, Metric

TASK_FILE = "task.toml"
SETTINGS_FILE = "autoresearch.toml"
SEED_ENV = "AUTORESEARCH_SEED"
OUTPUT_ENV = "AUTORESEARCH_OUTPUT"
DEFAULT_TIMEOUT = 600.0
GRACE_SECONDS = 30.0  # past the time budget, before the runner stops the script as a timeout
SKIP_DIRS = frozenset({".git", ".autoresearch", "__pycache__", ".worktrees", ".venv", ".pytest_cache"})
KEYS = {  # key -> (required, what it is)
    "name": (False, "a name for the task (default: the directory's name)"),
    "editable": (False, 'globs of the files the agent may change, e.g. ["train.py"] (the default)'),
    "command": (True, 'how one experiment runs, e.g. "python train.py"'),
    "metric": (True, 'the key the evaluator prints, e.g. "accuracy"'),
    "goal": (True, '"minimize" or "maximize"'),
    "time_budget": (False, "seconds of training clocked from outside, e.g. 60"),
    "timeout": (False, "seconds: the hard cap on one experiment"),
    "prepare": (False, 'run once by `init --task`, e.g. "python prepare.py"'),
    "readable": (False, 'globs of the data the experiment may read, e.g. ["data/train_*.npy"]'),
    "hidden": (False, 'globs of what only the evaluator reads, e.g. ["data/val_y.npy"]'),
    "evaluate": (True, 'the fixed evaluator, e.g. "python evaluate.py val"'),
    "holdout": (False, 'the evaluator on the test split, e.g. "python evaluate.py test"'),
    "seed_env": (False, f"the environment variable that carries the seed (default {SEED_ENV})"),
    "allowed_imports": (False, 'modules the script may import, e.g. ["numpy", "torch"]'),
    "program": (False, "the researcher's instructions to the agent (default program.md)"),
}


class TaskError(Exception):
    """A task declaration is wrong; the message names the key and says how to fix it. Nothing was created."""


@dataclass(frozen=True)
class Task:
    root: Path  # the task's directory
    name: str
    command: str
    metric: Metric
    evaluate: str
    editable: tuple[str, ...] = ("train.py",)
    time_budget: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    prepare: str | None = None
    readable: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    holdout: str | None = None
    seed_env: str = SEED_ENV
    allowed_imports: tuple[str, ...] = ()
    program: str = "program.md"
    source: Path = field(default=Path(TASK_FILE))  # the file it was read from (for messages)

    # -- the files, as relative posix paths under a root (the task's by default) ---------------------------------

    def files(self, root: Path | None = None) -> list[str]:
        return all_files(root or self.root)

    def editable_files(self, root: Path | None = None) -> list[str]:
        return [f for f in self.files(root) if matches(f, self.editable)]

    def hidden_files(self, root: Path | None = None) -> list[str]:
        return [f for f in self.files(root) if matches(f, self.hidden)]

    def fixed_files(self, root: Path | None = None) -> list[str]:
        """Every file that is neither editable nor hidden: the evaluator, the data, task.toml, the rest."""
        return [f for f in self.files(root) if not matches(f, self.editable) and not matches(f, self.hidden)]

    def is_editable(self, path: str) -> bool:
        return matches(path, self.editable) and not matches(path, self.hidden)

    def argv(self, command: str) -> list[str]:
        """A command line as argv; a leading `python` is this interpreter (the one with the task's packages)."""
        argv = shlex.split(command)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv

    def to_toml_table(self) -> dict:
        d = {"name": self.name, "editable": list(self.editable), "command": self.command,
             "metric": self.metric.name, "goal": self.metric.goal, "timeout": self.timeout,
             "readable": list(self.readable), "hidden": list(self.hidden), "evaluate": self.evaluate,
             "seed_env": self.seed_env, "allowed_imports": list(self.allowed_imports), "program": self.program}
        for key in ("time_budget", "prepare", "holdout"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


def matches(path: str, globs) -> bool:
    """`path` (posix, relative) matches one of `globs`: fnmatch, where a glob naming a directory covers it all."""
    for g in globs:
        g = g.strip("/")
        if fnmatch.fnmatchcase(path, g) or path.startswith(g + "/"):
            return True
    return False


def all_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            out.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(out)


def find_declaration(path: Path) -> tuple[Path, dict]:
    """-> (the file, its [task] table). `path` is a task directory or a task.toml / autoresearch.toml."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        candidates = [path / TASK_FILE, path / SETTINGS_FILE]
    elif path.is_file():
        candidates = [path]
    else:
        raise TaskError(f"{path} does not exist: give the task's directory (holding {TASK_FILE})")
    for c in candidates:
        if not c.is_file():
            continue
        try:
            data = tomllib.loads(c.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise TaskError(f"{c}: not valid TOML ({e}); fix the syntax") from e
        if "task" in data:
            if not isinstance(data["task"], dict):
                raise TaskError(f"{c}: `task` must be a table: write `[task]` above its keys")
            return c, data["task"]
    raise TaskError(f"{path}: no [task] table found in {' or '.join(c.name for c in candidates)}; write a "
                    f"{TASK_FILE} with a [task] table (keys: command, metric, goal, evaluate, ...)")


def load_task(path: Path) -> Task:
    """Read and check a declaration. Raises TaskError naming the first wrong key and its fix."""
    source, table = find_declaration(path)
    root = source.parent
    where = f"{source}: [task]"

    def bad(key: str, problem: str) -> TaskError:
        return TaskError(f"{where} {key}: {problem}; {KEYS[key][1]}" if key in KEYS else f"{where} {key}: {problem}")

    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise TaskError(f"{where} unknown key(s) {', '.join(unknown)}; the keys are: {', '.join(KEYS)}")
    for key, (required, _) in KEYS.items():
        if required and key not in table:
            raise bad(key, "missing")

    def text(key: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise bad(key, f"must be a non-empty string, not {value!r}")
        return value.strip()

    def globs(key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = table.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise bad(key, f"must be a list of non-empty strings, not {value!r}")
        for v in value:
            if v.startswith("/") or ".." in Path(v).parts:
                raise bad(key, f"{v!r} leaves the task's directory: give paths relative to {root}")
        return tuple(v.strip() for v in value)

    def seconds(key: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise bad(key, f"must be a positive number of seconds, not {value!r}")
        return float(value)

    goal = table["goal"]
    if goal not in GOALS:
        raise bad("goal", f'must be "minimize" or "maximize", not {goal!r}')
    metric = text("metric")
    seed_env = text("seed_env", SEED_ENV)
    if not seed_env.replace("_", "").isalnum() or seed_env[0].isdigit():
        raise bad("seed_env", f"{seed_env!r} is not an environment variable's name")
    commands = {k: text(k) for k in ("command", "evaluate", "holdout", "prepare")}
    for key, value in commands.items():
        if value is not None:
            try:
                shlex.split(value)
            except ValueError as e:
                raise bad(key, f"cannot be split into words ({e})") from e
    time_budget = seconds("time_budget")
    timeout = seconds("timeout") or (time_budget * 2 + 60 if time_budget else DEFAULT_TIMEOUT)
    if time_budget and timeout < time_budget:
        raise bad("timeout", f"{timeout:g}s is shorter than time_budget ({time_budget:g}s): raise it or leave it out")
    imports = globs("allowed_imports")
    task = Task(root=root, name=text("name", root.name), command=commands["command"], metric=Metric(metric, goal),
                evaluate=commands["evaluate"], editable=globs("editable", ("train.py",)), time_budget=time_budget,
                timeout=timeout, prepare=commands["prepare"], readable=globs("readable"), hidden=globs("hidden"),
                holdout=commands["holdout"], seed_env=seed_env, allowed_imports=imports,
                program=text("program", "program.md"), source=source)
    _check_before_prepare(task, bad)
    return task


def _check_before_prepare(task: Task, bad) -> None:
    files = task.files()
    for g in task.editable:
        if not any(matches(f, [g]) for f in files):
            raise bad("editable", f"{g!r} matches no file in {task.root}: name a file that exists (create it first)")
    for f in (f for f in files if matches(f, task.editable)):
        try:
            (task.root / f).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise bad("editable", f"{f} is not UTF-8 text: the agent rewrites an editable file whole, as text; "
                      "declare binary data (weights, arrays) readable instead") from None
    for g in task.editable:
        for h in task.hidden:
            if g.strip("/") == h.strip("/") or any(matches(f, [g]) and matches(f, [h]) for f in files):
                raise bad("hidden", f"{h!r} and editable {g!r} name the same file(s): a file is either the agent's "
                          "to change or the evaluator's to hide, not both; drop it from one of the lists")
    for key in ("command", "evaluate", "holdout"):
        value = getattr(task, key)
        if value is None:
            continue
        script = script_of(task.argv(value))
        if script and not (task.root / script).is_file() and task.prepare is None:
            raise bad(key, f"{script!r} does not exist in {task.root}: create it, or fix the command")
        if script and key != "command" and matches(script, task.editable):
            raise bad("editable", f"{script} is the evaluator's script ({key} = {value!r}) and an editable glob "
                      "matches it: the evaluator is fixed, so name the agent's files without it (e.g. "
                      '["train.py", "model.py"] rather than ["*.py"])')
    for key in ("readable", "hidden"):
        if task.prepare is None:  # without prepare, data must be there already
            _globs_match(task, key, files, bad)


def check_files(task: Task, root: Path | None = None) -> None:
    """After `prepare`: every readable and hidden glob matches a file, no hidden file is editable, the evaluator's
    scripts exist."""
    root = root or task.root

    def bad(key: str, problem: str) -> TaskError:
        return TaskError(f"{task.source}: [task] {key}: {problem}; {KEYS[key][1]}")

    files = all_files(root)
    for key in ("readable", "hidden"):
        _globs_match(task, key, files, bad, root)
    both = [f for f in files if matches(f, task.editable) and matches(f, task.hidden)]
    if both:
        raise bad("hidden", f"{', '.join(both)} is both editable and hidden: drop it from one of the lists")
    for key in ("command", "evaluate", "holdout"):
        value = getattr(task, key)
        script = script_of(task.argv(value)) if value else None
        if script and not (root / script).is_file():
            raise bad(key, f"{script!r} does not exist in {root}: create it, or fix the command")


def _globs_match(task: Task, key: str, files: list[str], bad, root: Path | None = None) -> None:
    for g in getattr(task, key):
        if not any(matches(f, [g]) for f in files):
            raise bad(key, f"{g!r} matches no file in {root or task.root}"
                      + (" after prepare" if task.prepare else "") + ": fix the glob, or write the file")


def script_of(argv: list[str]) -> str | None:
    """The script a `python x.py ...` command runs (None for `python -m mod` or another program)."""
    if len(argv) >= 2 and argv[0] == sys.executable and argv[1].endswith(".py"):
        return argv[1]
    return None
