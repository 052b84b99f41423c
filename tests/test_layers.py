"""The house's map, checked: no import circles, arrows that run down the layers only, and train.py's process loading
nothing of data/, run/ or loop/. Every import counts, at the top of a module, inside a function or under
TYPE_CHECKING: a circle through a lazy import is still a circle of ideas."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from loopkit import FAST_TRAIN

import autoresearch

PACKAGE = Path(autoresearch.__file__).resolve().parent

# Lowest first. A module may import its own room (a package, or a top-level module) and the rooms of lower layers.
# Rooms on one layer are siblings: neither imports the other (data/ and run/, agents/ and backends/).
LAYERS: list[tuple[str, ...]] = [
    ("settings", "vcs", "plugins"),
    ("paths",),
    ("harness",),
    ("workspace",),
    ("task",),
    ("data", "run"),
    ("agents", "backends"),
    ("loop",),
    ("see",),
    ("cli",),
    ("__main__", "template"),
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
MAX_LINES = 500  # past this a module holds two ideas (DESIGN.md); train.py, the agent's one file, is the exception
LONG_OK = {"template/train.py"}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("autoresearch", *parts))
        out[name.removesuffix(".__init__")] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, wherever in the module the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "" is the package itself (autoresearch/__init__.py)


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def back_arrows(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in g.items():
        for dst in targets:
            a, b = room(src), room(dst)
            if not b or a == b:
                continue
            if a not in RANK or b not in RANK:
                bad.append(f"{src} -> {dst}: room {a if a not in RANK else b!r} has no layer in test_layers.LAYERS")
            elif RANK[b] >= RANK[a]:
                bad.append(f"{src} -> {dst}: {b}/ is not below {a}/")
    return sorted(bad)


def test_the_check_sees_a_circle_and_a_back_arrow():
    g = {"autoresearch.loop.a": {"autoresearch.loop.b"}, "autoresearch.loop.b": {"autoresearch.loop.a"},
         "autoresearch.harness.x": {"autoresearch.run.y"}, "autoresearch.run.y": set()}
    assert circles(g) == [["autoresearch.loop.a", "autoresearch.loop.b"]]
    assert back_arrows(g) == ["autoresearch.harness.x -> autoresearch.run.y: run/ is not below harness/"]
    assert back_arrows({"autoresearch.data.p": {"autoresearch.run.q"}, "autoresearch.run.q": set()}) == [
        "autoresearch.data.p -> autoresearch.run.q: run/ is not below data/"]  # siblings do not import each other


def test_the_check_reads_lazy_and_type_checking_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from autoresearch.loop.core import Loop\n"
                   "def f():\n    from autoresearch.see import facts\n    from . import sibling\n")
    known = {"autoresearch.loop.core", "autoresearch.see", "autoresearch.see.facts", "autoresearch.run.sibling"}
    assert imports_of("autoresearch.run.m", src, known) == {"autoresearch.loop.core", "autoresearch.see",
                                                            "autoresearch.see.facts", "autoresearch.run.sibling"}


def test_no_import_circles():
    assert circles(graph()) == []


def test_arrows_run_down_the_layers():
    assert back_arrows(graph()) == []


def test_no_module_holds_two_ideas():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert {k: v for k, v in long.items() if k not in LONG_OK} == {}


MODULES_LINE = "autoresearch modules: "


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_py_s_process_loads_nothing_of_data_run_or_loop(tiny_workspace, tmp_path):
    """What the experiment's own process imported, read from inside it after a real run through the runner (the
    harness loads lazily, so only a run that trains and evaluates shows it all)."""
    from autoresearch.run.supervisor import Experiment, run_experiment
    from autoresearch.settings import Settings

    source = FAST_TRAIN.replace('print("---")', 'import sys\nprint("' + MODULES_LINE + '" + " ".join(sorted(m for m in '
                                'sys.modules if m.startswith("autoresearch"))))\nprint("---")')
    exp = Experiment(source=source, workspace=tiny_workspace, settings=Settings.load(tiny_workspace / "autoresearch.toml"),
                     run_dir=tmp_path / "run", cache=Path(os.environ["AUTORESEARCH_CACHE"]))
    lines: list[str] = []
    result = run_experiment(exp, on_line=lines.append)
    assert result.ok, result.reason
    loaded = next(line for line in lines if line.startswith(MODULES_LINE))[len(MODULES_LINE):].split()
    assert "autoresearch.harness.evaluate" in loaded and "autoresearch.harness.dataloader" in loaded
    assert [m for m in loaded if room(m) not in ("harness", "settings", "paths", "")] == []
