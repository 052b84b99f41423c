"""What `init --task` warns about in an evaluator: the one rule of a task author is that the evaluator must not
import or unpickle what the experiment wrote. An evaluator that uses pickle (or joblib), `torch.load` without
`weights_only=True`, `np.load(..., allow_pickle=True)`, or imports an editable file runs code the agent wrote in
the one process that reads the hidden files."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from autoresearch.task.declaration import Task, matches, script_of

UNPICKLERS = ("pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve")


def evaluator_warnings(task: Task, judge: Path, editable: list[str]) -> list[str]:
    scripts = {s for cmd in (task.evaluate, task.holdout) if cmd and (s := script_of(task.argv(cmd)))}
    files = {Path(e).with_suffix("").as_posix().replace("/", ".") for e in editable if e.endswith(".py")}

    def modules(name: str) -> bool:  # an editable file's module, or one an editable glob would match once written
        path, top = name.replace(".", "/"), name.split(".")[0]
        if name in files:
            return True
        if top in sys.stdlib_module_names or importlib.util.find_spec(top) is not None:  # json under ["*.py"]
            return False
        return matches(f"{path}.py", task.editable) or matches(f"{path}/__init__.py", task.editable)
    out: list[str] = []
    for script in sorted(scripts):
        path = judge / script
        try:
            tree = ast.parse(path.read_text(), str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        out += [f"{script}:{line}: {what}" for line, what in _findings(tree, modules)]
    return out


def _findings(tree: ast.AST, editable_module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for n in names:
            if n.split(".")[0] in UNPICKLERS:
                found.append((node.lineno, f"imports {n}: unpickling what the experiment wrote runs its code in the "
                              "evaluator; read .npy with allow_pickle=False, CSV, JSON or safetensors"))
            if editable_module(n):
                found.append((node.lineno, f"imports {n}, an editable file: the agent's code would run in the "
                              "evaluator, which reads the hidden files; move what it needs into a fixed file"))
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if name == "load" and owner == "torch" and not _is_true(kw.get("weights_only")):
                found.append((node.lineno, "torch.load without weights_only=True unpickles what the experiment "
                              "wrote: pass weights_only=True, or use safetensors"))
            if name == "load" and owner in ("np", "numpy") and _is_true(kw.get("allow_pickle")):
                found.append((node.lineno, "np.load(..., allow_pickle=True) unpickles what the experiment wrote: "
                              "use allow_pickle=False"))
    return sorted(found)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True
