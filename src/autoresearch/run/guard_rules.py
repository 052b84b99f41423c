"""What the static check of train.py refuses, and why: the allow-list of modules, the tables of refused names,
attributes and strings, each with the sentence an agent is shown; and the lookups of a dotted name in them.
The walk over the source that applies them is run/guard.py."""

from __future__ import annotations

import re

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


RESOLVED_STDLIB = ALLOWED_MODULES - {"__future__", "torch", "numpy", "triton", "flash_attn_interface", "flash_attn",
                                     "typing_extensions"}
