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
import re
from collections.abc import Iterable
from functools import cache

from autoresearch.run import guard_chains

HARNESS = "autoresearch.harness"

ALLOWED_MODULES = frozenset({
    "__future__", "math", "time", "gc", "sys", "os", "dataclasses", "functools", "itertools", "collections",
    "typing", "typing_extensions", "contextlib", "copy", "random", "statistics", "enum", "abc", "numbers",
    "warnings", "re", "operator", "string", "heapq", "bisect", "fractions", "json",
    "torch", "numpy", "triton", "flash_attn_interface", "flash_attn",
})

SPAWN = "train.py runs as one process; do the work in it (torch.compile manages its own workers)"
NETWORK = "experiments have no network access; everything a run needs comes from autoresearch.harness"
MEMORY = "it can tamper with the process's memory; write the computation in torch instead"
INTROSPECT = "it reaches into the harness or the interpreter; use only the names autoresearch.harness exports"
PERSIST = "experiments do not load or save files; each run trains from scratch within its time budget"
FILES = ("train.py does not touch files; data comes from make_dataloader(..., \"train\") and the tokenizer "
         "from Tokenizer.load()")
DYNAMIC = "code must be visible to this check; write it out as plain Python"

# Modules and dotted names (prefixes) train.py may not use, with the reason the agent is told.
FORBIDDEN = {
    **dict.fromkeys(["subprocess", "multiprocessing", "concurrent", "pty", "signal", "torch.multiprocessing",
                     "os.system", "os.popen", "os.fork", "os.kill"], SPAWN),
    **dict.fromkeys(["socket", "_socket", "http", "urllib", "urllib3", "requests", "httpx", "aiohttp", "ssl",
                     "ftplib", "smtplib", "poplib", "imaplib", "telnetlib", "asyncio", "socketserver", "xmlrpc",
                     "websocket", "websockets", "select", "selectors", "torch.distributed", "torch.hub",
                     "torch.utils.model_zoo"], NETWORK),
    **dict.fromkeys(["torch.utils.collect_env"], SPAWN),  # runs shell commands
    **dict.fromkeys(["ctypes", "_ctypes", "cffi", "mmap", "numpy.ctypeslib", "torch.utils.cpp_extension",
                     "torch.ops.load_library", "torch.classes.load_library", "triton.runtime.driver", "numpy.f2py",
                     "numpy.distutils", "numpy.lib.stride_tricks.as_strided"], MEMORY),
    **dict.fromkeys(["operator.attrgetter", "operator.methodcaller", "typing.get_type_hints", "typing.ForwardRef",
                     "typing_extensions.get_type_hints", "torch.jit.CompilationUnit", "numpy.lib.utils",
                     "numpy.lib.add_newdoc", "torch.jit.frontend", "torch.fx.graph_module.reduce_package_graph_module"],
                    "it turns strings into code or names; " + DYNAMIC),
    **dict.fromkeys(["importlib", "inspect", "builtins", "types", "code", "codeop", "runpy", "pkgutil", "traceback",
                     "linecache", "weakref", "dis", "autoresearch", "gc.get_objects", "gc.get_referrers",
                     "gc.get_referents", "gc.callbacks", "gc.garbage", "torch._C", "torch._ops", "torch._dispatch",
                     "torch._library", "torch._subclasses", "torch.utils._python_dispatch"], INTROSPECT),
    **dict.fromkeys(["torch.overrides", "torch.library.Library", "torch.library.impl", "torch.library.define",
                     "torch.library.register_kernel", "torch.library.fallthrough_kernel",
                     "torch.library.register_torch_dispatch"],
                    "it can replace what torch operations compute, the evaluation's included; write new functions "
                    "(or torch.library.custom_op) instead"),
    **dict.fromkeys(["pickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "dbm", "sqlite3",
                     "torch.load", "torch.save", "torch.jit.load", "torch.jit.save", "torch.export.load",
                     "torch.export.save", "torch.package", "torch.serialization", "numpy.load", "numpy.save",
                     "numpy.savez", "numpy.savez_compressed", "numpy.savetxt", "numpy.loadtxt", "numpy.genfromtxt",
                     "numpy.fromregex", "numpy.DataSource", "numpy.lib.npyio", "numpy.lib.format"], PERSIST),
    **dict.fromkeys(["numpy.ma.mrecords", "torch.cuda.tunable"], FILES),  # read and write files by name
    **dict.fromkeys(["pathlib", "shutil", "glob", "fnmatch", "tempfile", "io", "fileinput", "zipfile", "tarfile",
                     "gzip", "bz2", "lzma", "csv", "os.path", "numpy.fromfile", "numpy.memmap", "torch.from_file",
                     "torch.utils.data.datapipes"],
                    FILES),
    **dict.fromkeys(["torch.enable_grad", "torch.set_grad_enabled", "torch.autograd.enable_grad",
                     "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode", "torch.autograd.grad",
                     "torch.autograd.grad_mode.enable_grad", "torch.autograd.grad_mode.set_grad_enabled",
                     "torch.func", "torch._C._set_grad_enabled"],
                    "evaluate_bpb scores the model under no_grad and it must not learn while being scored; "
                    "training happens in the training loop only (loss.backward()); use torch.no_grad() where you "
                    "need it"),
    **dict.fromkeys(["torch.set_default_device", "torch.set_default_dtype", "torch.set_default_tensor_type"],
                    "it changes where and in what dtype every new tensor is made, the harness's and the "
                    "evaluation's too (the run would be refused after training); pass device= and dtype= to your "
                    "own tensors, or build the model inside `with torch.device(...)`"),
}
RESTRICTED = {  # modules of which only these attributes may be used
    "sys": frozenset({"exit", "stdout", "stderr", "argv", "version", "version_info", "platform", "maxsize",
                      "float_info", "setrecursionlimit", "getrecursionlimit"}),
    "os": frozenset({"environ", "cpu_count"}),
}
SEGMENTS = frozenset({"os", "sys", "ctypes", "subprocess", "importlib", "inspect", "builtins", "pickle", "marshal",
                      "socket", "shutil", "pathlib", "io", "glob", "tempfile", "multiprocessing"})  # torch.os ...
BUILTINS = {  # builtin names train.py may not use, even without calling them
    "open": FILES, "exec": DYNAMIC, "eval": DYNAMIC, "compile": DYNAMIC, "__import__": INTROSPECT,
    "globals": INTROSPECT, "locals": INTROSPECT, "vars": INTROSPECT, "__builtins__": INTROSPECT,
    "__loader__": INTROSPECT, "__spec__": INTROSPECT, "breakpoint": INTROSPECT,
}
TORCH_HOOKS = {"__torch_function__", "__torch_dispatch__"}  # would intercept the evaluation's own torch calls
# Private names of modules are internals (dispatcher, codecache, storages from raw pointers, other modules under a
# private alias: collections._sys), except torch's compiler configs (public names below them only) and ops that
# are public in all but name:
PRIVATE_OK = re.compile(r"^torch\.(_(inductor|dynamo|functorch)(\.config(\.[A-Za-z]\w*)*)?|_dynamo\.(reset|"
                        r"mark_dynamic|maybe_mark_dynamic|mark_static|disable|allow_in_graph|graph_break)|"
                        r"_foreach_\w+|_fused_\w+|_scaled_mm|_grouped_mm)$")
PRIVATE = ("{name} is a private name of {owner}: private internals can change what the evaluation computes or "
           "reach past this check (collections._sys is sys); use public APIs (torch._inductor/_dynamo config and "
           "torch._foreach_* are fine)")
# Dunders that read a name or call the ordinary protocol (nn.Module.__init__(self)): none reaches globals, code,
# frames, subclasses or a module's loader.
SAFE_DUNDERS = frozenset({"__init__", "__name__", "__qualname__", "__len__", "__call__", "__enter__", "__exit__",
                          "__iter__", "__next__", "__getitem__", "__setitem__", "__contains__", "__repr__", "__str__",
                          "__post_init__", "__version__"})
ATTRIBUTES = {  # attribute names refused on any object
    **dict.fromkeys(["tofile", "fromfile", "from_file", "memmap", "load_library", "load_inline"], FILES),
    **dict.fromkeys(["ctypes", "_ctypes", "_new_with_weak_ptr", "CUDAPluggableAllocator", "change_current_allocator"],
                    MEMORY),
    **dict.fromkeys(["f_globals", "f_locals", "f_back", "f_code", "f_builtins", "gi_frame", "gi_code", "cr_frame",
                     "cr_code", "ag_frame", "tb_frame", "tb_next", "co_code", "co_consts", "co_names", "py_impl"],
                    INTROSPECT),
    "token_bytes": "the byte length of each token is the evaluation's yardstick and stays the harness's own; "
                   "decode tokens with tokenizer.decode if you need their text",
}
# module attributes train.py may set: torch.backends.<module>.<option>, torch.backends.cuda.matmul.<option> and
# the compiler configs (any public depth: torch._inductor.config.triton.cudagraphs)
CONFIG = re.compile(r"^torch\.(backends\.[a-z]\w*(\.matmul)?\.[a-z]\w*|"
                    r"_(inductor|dynamo|functorch)\.config(\.[A-Za-z]\w*)+)$")
STRINGS = [  # text that reaches for the data, the records or the launcher's settings
    (re.compile(r"\.npy\b|\b(train|val|test)\.(tokens|offsets)\b|meta\.json|(^|[/\\])prepared([/\\]|$)", re.I),
     "it names the prepared data files; read training data only through make_dataloader(..., \"train\")"),
    (re.compile(r"results\.tsv|journal\.db|(^|[/\\])journal([/\\.]|$)|\.autoresearch\b|run\.log|result\.json", re.I),
     "it names the records of this research run, which experiments may not read or write"),
    (re.compile(r"autoresearch\.toml|AUTORESEARCH_|\.cache([/\\]|$)|^/proc\b|/proc/", re.I),
     "it names the launcher's settings, caches or process information, which are not train.py's business"),
    (re.compile(r"\bHF_[A-Z]"), "it names Hugging Face settings; experiments have no network and no hub access"),
]
DUNDER_TEXT = re.compile(r"__\w+__")  # in a string: a name for getattr-like lookups
TYPE_TEXT = re.compile(r"^[\w\s.,\[\]|]*$")  # what a string annotation may hold: a type, no calls


@cache
def harness_names() -> frozenset[str]:
    import autoresearch.harness as harness

    return frozenset(harness.__all__)


def check_source(source: str, allowed_imports: Iterable[str] = ()) -> list[str]:
    """Problems of a proposed train.py, one sentence each; empty when it may run."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"train.py does not parse: {e.msg} (line {e.lineno}); fix the syntax and propose it again."]
    except (ValueError, RecursionError) as e:
        return [f"train.py does not parse: {e}; propose plain Python source."]
    checker = _Checker(source, frozenset(allowed_imports))
    try:
        checker.run(tree)
    except RecursionError:
        return ["train.py is nested too deeply to check; flatten the deepest expressions."]
    return list(dict.fromkeys(checker.problems))  # in order, without repeats


def path_problem(path: str, imported: bool = False) -> str | None:
    """Why train.py may not use the dotted name `path` (a module, or something in one); None if it may."""
    parts = path.split(".")
    for i in range(1, len(parts) + 1):
        if (reason := FORBIDDEN.get(".".join(parts[:i]))) is not None:
            return reason
    if parts[0] in RESTRICTED and not (imported and len(parts) == 1) and (
            len(parts) < 2 or parts[1] not in RESTRICTED[parts[0]]):
        allowed = ", ".join(f"{parts[0]}.{a}" for a in sorted(RESTRICTED[parts[0]]))
        return f"of {parts[0]}, train.py may use only {allowed}"
    private = [i for i, p in enumerate(parts) if i and p.startswith("_") and p not in SAFE_DUNDERS]
    if private and not PRIVATE_OK.match(path):
        return PRIVATE.format(name=parts[private[0]], owner=".".join(parts[:private[0]]))
    for seg in parts[1:]:  # torch.os.system, np.sys.modules: other modules reached through an allowed one
        if seg in SEGMENTS:
            return f"it reaches module {seg} through {parts[0]}; use {parts[0]}'s own functions"
    return None


def defined_problem(path: str) -> str | None:
    """Why an object defined as `path` (module.qualname) may not be reached under another name; None if it may.
    The FORBIDDEN table only: torch's public ops are defined in its private modules (torch._C._nn)."""
    parts = path.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix.startswith("torch._") or (prefix in DEFINED_BY_NAME and i < len(parts)):
            continue
        if (reason := FORBIDDEN.get(prefix)) is not None:
            return reason
    return None


# Forbidden modules that also define allowed names (torch.no_grad is torch.autograd.grad_mode.no_grad): what is
# defined there is refused by its own entry only.
DEFINED_BY_NAME = frozenset({"torch.autograd.grad_mode"})


@cache
def chain_problem(path: str) -> str | None:
    """Static table first, then where the chain really leads (guard_chains)."""
    return path_problem(path) or guard_chains.chain_problem(path, RESOLVED_STDLIB, defined_problem)


RESOLVED_STDLIB = ALLOWED_MODULES - {"__future__", "torch", "numpy", "triton", "flash_attn_interface", "flash_attn",
                                     "typing_extensions"}


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
