"""Where an attribute chain rooted in a module really leads: the static check's look at the real objects.

Modules carry other modules under public and private names (`os.sys`, `typing.sys`, `collections._sys`,
`torch._inductor.config.torch`, `torch.backends.cuda.torch`, `torch.storage.np`) and functions of other modules
(`torch.xpu.cast` is ctypes.cast). A check of dotted names alone cannot know that, so `chain_problem` follows the
chain through the modules the orchestrator has imported anyway (the guard imports the harness, which imports
torch and numpy) and refuses:
- a module reached under any name but its own (`typing.sys`, not `sys`): once a chain holds a module, every name of
  that module is one attribute away, whatever the tables of guard.py say about it;
- a function or class defined where train.py may not reach (`torch.xpu.cast` -> ctypes.cast, `torch.serialization.load`
  under another name), judged by the table of guard.path_problem on the name it was defined under.

Only `getattr`-free lookups are made (a module's __dict__, `inspect.getattr_static` on classes): resolving never runs
a property or a module's lazy __getattr__. A genuine submodule that is not imported yet is imported (installed package
code, as `import torch.x` in train.py would run anyway; only for the roots in RESOLVED). Where the chain leaves
modules and classes (an instance, a function's attribute, a root that is not resolved here), the rest is judged by
name: a segment named like a top-level module that is not a submodule on disk is refused.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path

# Roots followed through the real objects: the standard library ones train.py may import, and the two packages
# the harness imports into the orchestrator anyway. Others (a workspace's extra dependency, triton, flash_attn)
# are judged by name, so that checking a proposal never imports a package the orchestrator did not need.
RESOLVED_EXTRA = frozenset({"torch", "numpy"})
# C modules behind public ones: what is defined there is os's, io's, ... (the table speaks of the public names)
BACKING = {"posix": "os", "nt": "os", "_io": "io", "_thread": "threading", "_signal": "signal", "_pickle": "pickle",
           "_socket": "socket", "_posixsubprocess": "subprocess", "_ctypes": "ctypes", "_imp": "importlib",
           "_frozen_importlib": "importlib", "_frozen_importlib_external": "importlib", "_weakref": "weakref",
           "_functools": "functools", "_collections": "collections", "_operator": "operator", "_abc": "abc"}
DEFINED_OK = frozenset({"functools", "collections", "operator", "abc"})  # backing modules of allowed ones
MISSING = object()


def chain_problem(path: str, stdlib_ok: frozenset[str], name_problem: Callable[[str], str | None]) -> str | None:
    """Why the chain `path` (root: an imported module) may not be used, by what it leads to; None if it may.

    `stdlib_ok`: the standard-library roots that are followed through the real objects; `name_problem`: the
    static table (guard.path_problem) applied to where an object found on the way was defined."""
    parts = path.split(".")
    obj = _root(parts[0], stdlib_ok)
    for i in range(1, len(parts)):
        here = ".".join(parts[: i + 1])
        value = _lookup(obj, parts[i], here) if obj is not None else MISSING
        if value is MISSING:
            if parts[i] in top_level_names() and not _submodule_on_disk(parts[: i + 1]):
                return f"it reaches module {parts[i]} through {'.'.join(parts[:i])}; import what you need directly"
            obj = None
            continue
        if isinstance(value, types.ModuleType):
            name = value.__name__
            if name != here:
                return (f"{here} is module {name} under another name; import {name} directly if it is allowed, "
                        "or use the functions of the module you imported")
        elif (defined := _defined_as(value)) is not None and defined != here:
            if (reason := name_problem(defined)) is not None:
                return f"{here} is {defined}: {reason}"
        obj = value if isinstance(value, (types.ModuleType, type)) else None
    return None


@cache
def is_module(path: str, stdlib_ok: frozenset[str]) -> bool | None:
    """Whether the dotted name is a module object (None: unknown, not resolved here)."""
    parts = path.split(".")
    obj = _root(parts[0], stdlib_ok)
    for i in range(1, len(parts)):
        if obj is None:
            return _submodule_on_disk(parts) or None
        value = _lookup(obj, parts[i], ".".join(parts[: i + 1]))
        obj = None if value is MISSING else value
    return None if obj is None else isinstance(obj, types.ModuleType)


def _root(name: str, stdlib_ok: frozenset[str]):
    if name in sys.modules and (name in stdlib_ok or name in RESOLVED_EXTRA):
        return sys.modules[name]
    if name in stdlib_ok or name in RESOLVED_EXTRA:
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - not installed here: judged by name
            return None
    return None


def _lookup(obj, name: str, here: str):
    if isinstance(obj, types.ModuleType):
        value = obj.__dict__.get(name, MISSING)
        if value is MISSING and (value := sys.modules.get(here, MISSING)) is MISSING and _is_submodule(obj, here):
            try:
                value = importlib.import_module(here)
            except Exception:  # noqa: BLE001 - a submodule that does not import here: judged by name
                return MISSING
        return value
    if isinstance(obj, type):
        return inspect.getattr_static(obj, name, MISSING)
    return MISSING


def _is_submodule(module: types.ModuleType, here: str) -> bool:
    if not hasattr(module, "__path__"):
        return False
    try:
        return importlib.util.find_spec(here) is not None
    except (ImportError, ValueError):
        return False


def _defined_as(value) -> str | None:
    """`module.qualname` where a function or class was defined, its C module named as the public one."""
    if not callable(value):
        return None
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    root, _, rest = module.partition(".")
    if root in BACKING and BACKING[root] not in DEFINED_OK:
        module = BACKING[root] + ("." + rest if rest else "")
    return f"{module}.{qualname}"


@cache
def top_level_names() -> frozenset[str]:
    """Names of top-level modules: a chain segment named so, that is not a submodule, is another module."""
    return frozenset(sys.stdlib_module_names) | {"torch", "numpy", "np", "triton", "flash_attn", "autoresearch"}


@cache
def _package_dir(root: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(root)  # a top-level name: located, not imported
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _submodule_on_disk(parts: list[str]) -> bool:
    return _on_disk(tuple(parts))


@cache
def _on_disk(parts: tuple[str, ...]) -> bool:
    """Whether `a.b.c` is a genuine submodule: a file or package at that place in a's package directory."""
    base = _package_dir(parts[0])
    if base is None or len(parts) < 2:
        return False
    where = base.joinpath(*parts[1:-1])
    name = parts[-1]
    if (where / name / "__init__.py").is_file() or (where / f"{name}.py").is_file():
        return True
    return any((where / f"{name}{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES)
