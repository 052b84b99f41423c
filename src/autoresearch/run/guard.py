"""Static check of a proposed train.py, before it costs a training run.

An agent optimising val_bpb will try every way to move the number that is not progress: read the validation
split, load someone's weights, patch the metric, reach the journal. This module reads the source (ast, never
runs it) and lists what train.py may not do, each problem one sentence that says what to do instead. It is one
layer of several: the harness checks itself at run time, and the sandbox confines the process.

Decisions:
- Imports come from an allow-list (ALLOWED_MODULES plus the workspace's extra dependencies); the FORBIDDEN table
  wins over both, so an extra dependency can never re-enable, say, subprocess.
- `os` is allowed for `os.environ["NAME"]` / `os.environ.get("NAME")` with a literal name (PYTORCH_CUDA_ALLOC_CONF
  and the like) and `os.cpu_count()`; nothing else of os. `sys` for exit, stdout/stderr, argv, version and the
  recursion limit; `gc` for everything but its object-graph walkers.
- Chains rooted in a module are allow-list based where it matters: no private name (`_x`, dunders but
  SAFE_DUNDERS) of any module, except PRIVATE_OK (torch's compiler configs and a few public-in-all-but-name ops);
  and a chain is followed through the real objects (guard_chains.py) so that it never reaches a module under
  another name (`typing.sys`, `torch.backends.cuda.torch`) or a refused function under an allowed one
  (`torch.xpu.cast` is ctypes.cast). A module object is not a value to pass around either (`[torch][0]`).
- Attribute assignment on modules (torch, F, np ...) or harness names is refused, except configuration:
  torch.backends.<module>.<option> and the compiler configs (torch._inductor.config, torch._dynamo.config).
- This is early feedback, not the boundary: what the README promises holds with it switched off (the sandbox,
  the runner and the harness check at run time).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from functools import cache

from autoresearch.run import guard_chains
from autoresearch.run.guard_rules import (  # noqa: F401  (re-exported: the tables, for tools and tests)
    ALLOWED_MODULES,
    ATTRIBUTES,
    BUILTINS,
    CONFIG,
    DEFINED_BY_NAME,
    DUNDER_TEXT,
    DYNAMIC,
    FILES,
    FORBIDDEN,
    HARNESS,
    INTROSPECT,
    MEMORY,
    NETWORK,
    PERSIST,
    PRIVATE,
    PRIVATE_OK,
    RESOLVED_STDLIB,
    RESTRICTED,
    SAFE_DUNDERS,
    SEGMENTS,
    SPAWN,
    STRINGS,
    TORCH_HOOKS,
    TYPE_TEXT,
    defined_problem,
    path_problem,
)


@cache
def harness_names() -> frozenset[str]:
    import autoresearch.harness as harness

    return frozenset(harness.__all__)


def _parse(source: str) -> ast.Module | str:
    """The tree of a proposed script, or the sentence that says why it has none."""
    try:
        return ast.parse(source)
    except SyntaxError as e:
        return f"train.py does not parse: {e.msg} (line {e.lineno}); fix the syntax and propose it again."
    except (ValueError, RecursionError) as e:
        return f"train.py does not parse: {e}; propose plain Python source."


def check_source(source: str, allowed_imports: Iterable[str] = ()) -> list[str]:
    """Problems of a proposed train.py, one sentence each; empty when it may run."""
    tree = _parse(source)
    if isinstance(tree, str):
        return [tree]
    checker = _Checker(source, frozenset(allowed_imports))
    try:
        checker.run(tree)
    except RecursionError:
        return ["train.py is nested too deeply to check; flatten the deepest expressions."]
    return list(dict.fromkeys(checker.problems))  # in order, without repeats


def check_task_source(source: str, allowed_imports: Iterable[str] = ()) -> list[str]:
    """Problems of a proposed script of a researcher's task (task.toml), early feedback only: it must parse, and
    import only the standard library, the task's `allowed_imports` and autoresearch.harness (its budget helper).
    The rules of check_source are the GPT task's; a task's boundary is its process (the sandbox, the evaluator)."""
    tree = _parse(source)
    if isinstance(tree, str):
        return [tree]
    allowed = ({m.split(".")[0] for m in allowed_imports} | set(sys.stdlib_module_names)) - {"autoresearch"}
    problems = []
    for node, name in _imports(tree):
        if name.split(".")[0] not in allowed and not (name + ".").startswith("autoresearch.harness."):
            problems.append(f"line {node.lineno}: `import {name}` is not allowed: the task allows the standard "
                            f"library, autoresearch.harness and {', '.join(sorted(set(allowed_imports))) or 'nothing else'}"
                            " (allowed_imports in task.toml, and what the best train.py imports)")
    return list(dict.fromkeys(problems))


def imported_modules(source: str) -> set[str]:
    """The top-level modules a source imports ({} when it does not parse)."""
    try:
        return {name.split(".")[0] for _, name in _imports(ast.parse(source))}
    except (SyntaxError, ValueError, RecursionError):
        return set()


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for name in names:
            yield node, name


@cache
def chain_problem(path: str) -> str | None:
    """Static table first, then where the chain really leads (guard_chains)."""
    return path_problem(path) or guard_chains.chain_problem(path, RESOLVED_STDLIB, defined_problem)


class _Checker(ast.NodeVisitor):
    def __init__(self, source: str, extra: frozenset[str]) -> None:
        self.source, self.extra = source, extra
        self.problems: list[str] = []
        self.imports: dict[str, str] = {}  # local name -> dotted path, from import statements
        self.modules: dict[str, str] = {}  # the same, plus assignments such as `t = torch`
        self.harness: dict[str, str] = {}  # local name -> harness name
        self.types: set[str] = set()  # names bound to type(...): attribute stores on them patch a class
        self.parents: dict[ast.AST, ast.AST] = {}
        self.locals: dict[ast.AST, set[str]] = {}  # function -> the names it binds

    def run(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self._collect_aliases(tree)
        self.visit(tree)

    def flag(self, node: ast.AST, reason: str) -> None:
        code = ast.get_source_segment(self.source, node) or ast.unparse(node)
        code = " ".join(code.split())
        code = code if len(code) <= 70 else code[:67] + "..."
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: `{code}` is not allowed: {reason}.")

    # ---- names ------------------------------------------------------------------------------------------

    def _collect_aliases(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if node.module == HARNESS:
                        self.harness[a.asname or a.name] = a.name
                    elif a.name != "*":
                        self.imports[a.asname or a.name] = f"{node.module}.{a.name}"
        self.modules.update(self.imports)
        for _ in range(3):  # `t = torch`, `_fa3 = flash_attn_interface`: aliases of aliases
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    path = self.resolve(node.value)
                    if path is not None and "__" not in path and chain_problem(path) is None:  # (else flagged there)
                        self.modules.setdefault(node.targets[0].id, path)
                    elif isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "type":
                        self.types.add(node.targets[0].id)

    def resolve(self, node: ast.AST) -> str | None:
        """Dotted path of `torch.nn.functional.cross_entropy`-like expressions rooted at an imported module."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.modules:
            return ".".join([self.modules[node.id], *reversed(parts)])
        return None

    def check_path(self, node: ast.AST, path: str, imported: bool = False) -> bool:
        """Flag a dotted module path that is forbidden or outside a restricted module's allow-list."""
        if (reason := path_problem(path, imported) or ("." in path and chain_problem(path)) or None) is not None:
            self.flag(node, reason)
            return True
        return False

    # ---- imports ------------------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.check_module(node, a.name)
            self.check_binding(node, a.asname or a.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.flag(node, "train.py runs as a script, so relative imports have nothing to import from")
            return
        module = node.module or ""
        if module == HARNESS:
            for a in node.names:
                if a.name not in harness_names():
                    names = ", ".join(sorted(harness_names()))
                    self.flag(node, f"autoresearch.harness exports only {names}")
            return
        if self.check_module(node, module):
            for a in node.names:
                if a.name == "*":
                    self.flag(node, f"star imports hide what is used; {DYNAMIC}")
                elif not self.check_path(node, f"{module}.{a.name}"):
                    self.check_binding(node, a.asname or a.name)

    def check_module(self, node: ast.AST, module: str) -> bool:
        if module.split(".")[0] == "autoresearch":
            self.flag(node, f"of autoresearch, train.py may only `from autoresearch.harness import ...` the names it "
                            f"exports: {', '.join(sorted(harness_names()))}")
            return False
        if self.check_path(node, module, imported=True):
            return False
        if not any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES | self.extra):
            allowed = ", ".join(sorted(ALLOWED_MODULES - {"__future__"}))
            self.flag(node, f"module {module} is not on the allow-list ({allowed}, plus the workspace's extra "
                            "dependencies); implement it with those")
            return False
        return True

    def check_binding(self, node: ast.AST, name: str) -> None:
        if name in self.harness:
            self.flag(node, f"{name} is the harness's; give your own object another name")
        elif name in TORCH_HOOKS:
            self.flag(node, f"{name} would intercept the torch calls of the evaluation itself; write plain modules "
                            "and functions")

    # ---- names, attributes, calls -------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_binding(node, node.id)
        elif node.id in BUILTINS:
            self.flag(node, BUILTINS[node.id])
        elif node.id in ("getattr", "setattr", "delattr", "hasattr") and not self._is_called(node):
            self.flag(node, f"call {node.id} directly, with a literal attribute name")
        elif self.harness.get(node.id) == "make_dataloader" and not self._is_called(node):
            self.flag(node, "call make_dataloader(tokenizer, B, T, \"train\", device=...) directly")
        elif node.id in self.modules and not isinstance(self.parents.get(node), ast.Attribute):
            path = self.modules[node.id]
            if node.id in self.imports and self.check_path(node, path):
                return
            self.check_environ(node, path)
            parent = self.parents.get(node)
            alias = isinstance(parent, ast.Assign) and parent.value is node
            if not alias and not self._is_local(node) and guard_chains.is_module(path, RESOLVED_STDLIB):
                self.flag(node, f"module {path} is not a value to pass around (what reaches it reaches all its "
                                f"names); use {node.id}.<name> where you need it")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.check_attribute_name(node, node.attr):
            pass
        elif isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_attribute_store(node, node)
        elif not isinstance(self.parents.get(node), ast.Attribute):  # the whole chain, once
            if (path := self.resolve(node)) is not None and not self.check_path(node, path):
                self.check_environ(node, path)
            self.check_harness_attribute(node)
        self.generic_visit(node)

    def check_attribute_name(self, node: ast.AST, name: str) -> bool:
        if name.startswith("__") and name.endswith("__") and name not in SAFE_DUNDERS:
            self.flag(node, f"dunder attributes such as {name} reach into objects' internals; use public names")
        elif name in ATTRIBUTES:
            self.flag(node, ATTRIBUTES[name])
        else:
            return False
        return True

    def check_attribute_store(self, node: ast.AST, target: ast.Attribute) -> None:
        base: ast.AST = target
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        root = base.id if isinstance(base, ast.Name) else None
        if root in self.types or (isinstance(base, ast.Call) and isinstance(base.func, ast.Name)
                                  and base.func.id == "type"):
            self.flag(node, "patching a class through type(...) changes every instance, the evaluation's too; "
                            "subclass it instead")
        elif root in self.harness:
            self.flag(node, "the harness's objects are fixed; change your own code instead")
        elif root in self.modules:
            path = self.resolve(target) or ""
            if not CONFIG.match(path):
                self.flag(node, "patching a module changes code the harness relies on; write your own function "
                                "instead (setting torch.backends.<module>.<option> and torch._inductor.config / "
                                "torch._dynamo.config options is fine)")
            else:
                self.check_path(node, path)

    def check_environ(self, node: ast.AST, path: str) -> None:
        if not (path + ".").startswith("os.environ."):
            return
        parent = self.parents.get(node)
        if path == "os.environ" and isinstance(parent, ast.Subscript) and _is_str(parent.slice):
            return
        if path in ("os.environ.get", "os.environ.setdefault") and self._is_called(node):
            if parent.args and _is_str(parent.args[0]):
                return
        self.flag(node, "use os.environ only as os.environ[\"NAME\"] or os.environ.get(\"NAME\") with a literal name")

    def check_harness_attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and self.harness.get(node.value.id) == "Tokenizer":
            call = self.parents.get(node)
            if node.attr != "load":
                self.flag(node, "the tokenizer is fixed for the workspace; get it with Tokenizer.load()")
            elif isinstance(call, ast.Call) and (call.args or call.keywords):
                self.flag(call, "Tokenizer.load() takes no arguments: the workspace's tokenizer is the one measured")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("getattr", "setattr", "delattr", "hasattr"):
            self.check_reflection(node, func.id)
        elif isinstance(func, ast.Name) and func.id in self.harness:
            self.check_harness_call(node, self.harness[func.id])
        self.generic_visit(node)

    def check_reflection(self, node: ast.Call, fn: str) -> None:
        if len(node.args) < 2 or not _is_str(node.args[1]):
            self.flag(node, f"{fn} needs a literal attribute name here; write obj.name instead")
            return
        name = node.args[1].value
        if self.check_attribute_name(node, name):
            pass
        elif fn in ("setattr", "delattr"):
            self.check_attribute_store(node, ast.Attribute(value=node.args[0], attr=name, ctx=ast.Store()))
        elif (path := self.resolve(ast.Attribute(value=node.args[0], attr=name, ctx=ast.Load()))) is not None:
            self.check_path(node, path)

    def check_harness_call(self, node: ast.Call, name: str) -> None:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            self.flag(node, f"call {name} with its arguments written out, not *args or **kwargs")
            return
        keywords = {k.arg: k.value for k in node.keywords}
        if name == "make_dataloader":
            split = node.args[3] if len(node.args) > 3 else keywords.get("split")
            if split is not None and not (_is_str(split) and split.value == "train"):
                self.flag(node, "training may read the \"train\" split only (the validation and test splits are "
                                "the evaluation's); pass the literal \"train\"")
            if len(node.args) > 5 or "directory" in keywords:
                self.flag(node, "the harness decides where the data lives; leave out directory=")
        elif name == "evaluate_bpb" and (len(node.args) > 3 or set(keywords) - {"model", "tokenizer", "batch_size"}):
            self.flag(node, "call evaluate_bpb(model, tokenizer, batch_size) with exactly these arguments")
        elif name == "Tokenizer":
            self.flag(node, "the tokenizer is fixed for the workspace; get it with Tokenizer.load()")

    def _is_local(self, node: ast.Name) -> bool:
        """Whether the name is bound in the function it is used in (a parameter `config`, not the module)."""
        scope = self.parents.get(node)
        while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            scope = self.parents.get(scope)
        if scope is None:
            return False
        if scope not in self.locals:
            names = {a.arg for a in ast.walk(scope.args) if isinstance(a, ast.arg)}
            names |= {n.id for n in ast.walk(scope) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            names -= {g for n in ast.walk(scope) if isinstance(n, ast.Global) for g in n.names}
            self.locals[scope] = names
        return node.id in self.locals[scope]

    def _is_called(self, node: ast.AST) -> bool:
        parent = self.parents.get(node)
        return isinstance(parent, ast.Call) and parent.func is node

    # ---- assignments and strings --------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.check_binding(node, node.name)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_arg(self, node: ast.arg) -> None:
        self.check_binding(node, node.arg)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            self.check_binding(node, name)

    visit_Nonlocal = visit_Global

    def visit_Constant(self, node: ast.Constant) -> None:
        text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
        if not isinstance(text, str) or self._is_docstring(node):
            return
        for pattern, reason in STRINGS:
            if pattern.search(text):
                self.flag(node, reason)
        if any(d not in SAFE_DUNDERS | {"__main__"} for d in DUNDER_TEXT.findall(text)):
            self.flag(node, "it names an object's internals (a dunder name); use public names")
        if self._is_annotation(node) and not TYPE_TEXT.match(text):
            self.flag(node, "a string annotation may name a type only; annotations can be evaluated as code")

    def _is_annotation(self, node: ast.Constant) -> bool:
        parent = self.parents.get(node)
        return (isinstance(parent, (ast.arg, ast.AnnAssign)) and parent.annotation is node) or (
            isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and parent.returns is node)

    def _is_docstring(self, node: ast.Constant) -> bool:
        parent = self.parents.get(node)
        return isinstance(parent, ast.Expr)  # a bare string statement: inert (and __doc__ is not reachable)


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
