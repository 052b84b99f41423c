"""Create a workspace from the template, find it again, and read or rewrite train.py's CAPS constants."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path
from typing import Any

from autoresearch import vcs
from autoresearch.settings import PROFILES, SETTINGS_FILE, Settings

EDITABLE = "train.py"  # the one file an agent may change
RUN_DIR = ".autoresearch"  # untracked: journal, logs, results of each experiment
JOURNAL_FILE = "journal.db"  # in RUN_DIR
GITIGNORE = """\
# autoresearch: records stay out of the history the agent's commits form
results.tsv
run.log
.autoresearch/
.worktrees/
__pycache__/
"""

# `NAME = literal  # comment` on one line: how train.py states its hyperparameters.
CONSTANT_RE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)(?P<eq>\s*=\s*)(?P<value>.+?)(?P<comment>\s+#.*)?$")


class WorkspaceError(Exception):
    pass


def template_text(name: str) -> str:
    return resources.files("autoresearch.template").joinpath(name).read_text()


def harness_surface() -> str:
    """What train.py may import from autoresearch.harness, as an agent's prompt shows it."""
    import autoresearch.harness as harness

    doc = harness.__doc__ or ""
    return "from autoresearch.harness import ...\n" + doc.split("\n", 1)[1].strip() + "\n"


def init_workspace(directory: Path, settings: Settings) -> Path:
    """Create a git repository holding train.py, program.md, autoresearch.toml and .gitignore, committed."""
    directory = directory.expanduser().resolve()
    if (directory / SETTINGS_FILE).exists():
        raise WorkspaceError(f"{directory} is already a workspace; pick a new directory (nothing was changed)")
    if directory.exists() and any(directory.iterdir()):
        raise WorkspaceError(f"{directory} exists and is not empty; pick a new or empty directory (nothing was changed)")
    directory.mkdir(parents=True, exist_ok=True)
    train = set_constants(template_text("train.py"), PROFILES[settings.profile].train_constants)
    (directory / EDITABLE).write_text(train)
    (directory / "program.md").write_text(program_text(settings))
    (directory / SETTINGS_FILE).write_text(settings.to_toml())
    (directory / ".gitignore").write_text(GITIGNORE)
    vcs.init_repo(directory)
    vcs.commit_all(directory, f"autoresearch init ({settings.profile} profile, {settings.dataset} data)")
    return directory


def program_text(settings: Settings) -> str:
    """The template's program.md, saying what this workspace's budget is: seconds, or tokens."""
    if settings.token_budget:
        values = {"budget": f"fixed training budget of {settings.token_budget:,} tokens per experiment",
                  "budget_rule": ("Every experiment trains on the same number of tokens (`TOKEN_BUDGET`; the loader "
                                  "ends there, and the time budget is only a cap), so a change wins by learning more "
                                  "per token: a faster step buys nothing here, a better use of each token does."),
                  "constants": "`MAX_SEQ_LEN`, `TOKEN_BUDGET`, `TIME_BUDGET`, `EVAL_TOKENS`"}
    else:
        values = {"budget": "fixed wall-clock training budget",
                  "budget_rule": "The time budget is fixed, so a change wins by learning more per second.",
                  "constants": "`MAX_SEQ_LEN`, `TIME_BUDGET`, `EVAL_TOKENS`"}
    text = template_text("program.md")
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def read_constants(source: str) -> dict[str, Any]:
    """The top-level CAPS constants of a train.py whose value is a Python literal (what an agent may tune)."""
    out: dict[str, Any] = {}
    for line in source.splitlines():
        m = CONSTANT_RE.match(line)
        if not m:
            continue
        try:
            out[m["name"]] = ast.literal_eval(m["value"])
        except (ValueError, SyntaxError):
            try:  # simple arithmetic such as 2**19
                out[m["name"]] = _eval_arith(m["value"])
            except ValueError:
                continue
    return out


def constants_of(source: str, files: dict[str, str] | None = None) -> dict[str, Any]:
    """train.py's CAPS constants by name, and those of a task's other editable Python files as `path:NAME`."""
    out = dict(read_constants(source))
    for path, text in sorted((files or {}).items()):
        if path.endswith(".py"):
            out.update({f"{path}:{k}": v for k, v in read_constants(text).items()})
    return out


class Code(str):
    """A value to write verbatim as Python source (e.g. Code("2**19")) rather than as a string literal."""


def literal(value: Any) -> str:
    """Python source for a constant's value: strings in double quotes (train.py's style), the rest as repr."""
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def set_constants(source: str, values: dict[str, Any]) -> str:
    """Rewrite `NAME = ...` lines, keeping each line's comment aligned. Values are Python values (or Code)."""
    missing = set(values)
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = CONSTANT_RE.match(line.rstrip("\n"))
        if not m or m["name"] not in values:
            continue
        value = values[m["name"]]
        head = f"{m['name']}{m['eq']}{literal(value)}"
        comment = m["comment"] or ""
        if comment:  # keep comments aligned where the value got longer or shorter
            width = len(m["name"]) + len(m["eq"]) + len(m["value"]) + len(comment) - len(comment.lstrip())
            comment = " " * max(2, width - len(head)) + comment.lstrip()
        lines[i] = head + comment + ("\n" if line.endswith("\n") else "")
        missing.discard(m["name"])
    if missing:
        raise WorkspaceError(f"train.py has no constant(s) {', '.join(sorted(missing))} to set")
    return "".join(lines)


def _eval_arith(expr: str) -> int | float:
    tree = ast.parse(expr, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Pow, ast.Mult, ast.Add, ast.Sub,
               ast.Div, ast.FloorDiv, ast.USub)
    if not all(isinstance(n, allowed) for n in ast.walk(tree)):
        raise ValueError(expr)
    value = eval(compile(tree, "<constant>", "eval"), {"__builtins__": {}})  # only arithmetic on literals
    if not isinstance(value, (int, float)):
        raise ValueError(expr)
    return value
