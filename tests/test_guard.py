"""The static check: the template passes, each way of moving val_bpb without progress is caught and explained."""

from __future__ import annotations

import pytest

from autoresearch.run.guard import check_source
from autoresearch.settings import PROFILES
from autoresearch.workspace import set_constants, template_text

TEMPLATE = template_text("train.py")
LOADER = 'make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train", device=device)'
EVALUATE = "evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)"
TOKENIZER = "tokenizer = Tokenizer.load()"


def append(code: str) -> str:
    """The template with `code` added at module level, just before the `if __name__ == "__main__":` guard."""
    head, tail = TEMPLATE.rsplit('\nif __name__ == "__main__":', 1)
    return f'{head}\n{code}\n\nif __name__ == "__main__":{tail}'


def replace(old: str, new: str) -> str:
    assert TEMPLATE.count(old) == 1, old
    return TEMPLATE.replace(old, new)


def test_template_passes():
    assert check_source(TEMPLATE) == []


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_variant_passes(profile):
    assert check_source(set_constants(TEMPLATE, PROFILES[profile].train_constants)) == []


CAUGHT = [
    # imports: network, spawning, memory, introspection, persistence, files
    ("socket", append("import socket"), "no network access"),
    ("urllib", append("import urllib.request"), "no network access"),
    ("requests", append("import requests"), "no network access"),
    ("torch.distributed", append("import torch.distributed as dist"), "no network access"),
    ("subprocess", append("import subprocess"), "runs as one process"),
    ("multiprocessing", append("import multiprocessing"), "runs as one process"),
    ("ctypes", append("import ctypes"), "tamper with the process's memory"),
    ("importlib", append("import importlib"), "reaches into the harness"),
    ("pickle", append("import pickle"), "do not load or save files"),
    ("pathlib", append("from pathlib import Path"), "does not touch files"),
    ("shutil", append("import shutil"), "does not touch files"),
    ("os.path", append("import os.path"), "does not touch files"),
    ("not on the allow-list", append("import scipy"), "not on the allow-list"),
    ("relative import", append("from . import helpers"), "relative imports"),
    ("private harness module", append("from autoresearch.harness.evaluate import _hand_over"),
     "may only `from autoresearch.harness import ...`"),
    ("harness submodule", append("import autoresearch.harness.evaluate"), "may only `from autoresearch.harness import"),
    ("harness as a module", append("from autoresearch import harness"), "may only `from autoresearch.harness"),
    ("unexported harness name", append("from autoresearch.harness import channel"), "exports only"),
    ("from-import of a forbidden name", append("from torch import load"), "do not load or save files"),
    # builtins and reflection
    ("__import__", append('os_module = __import__("os")'), "reaches into the harness"),
    ("exec", append('exec("x = 1")'), "visible to this check"),
    ("eval", append('y = eval("1 + 1")'), "visible to this check"),
    ("compile", append('c = compile("1", "f", "eval")'), "visible to this check"),
    ("globals", append('globals()["evaluate_bpb"] = None'), "reaches into the harness"),
    ("vars", append("v = vars(evaluate_bpb)"), "reaches into the harness"),
    ("open", append('log = open("results.tsv").read()'), "does not touch files"),
    ("open as a value", append("f = open"), "does not touch files"),
    ("breakpoint", append("breakpoint()"), "reaches into the harness"),
    ("computed getattr", append('h = evaluate_bpb\nz = getattr(h, "_" + "x")'), "literal attribute name"),
    ("dunder __globals__", append("g = evaluate_bpb.__globals__"), "dunder attributes"),
    ("dunder __code__ assignment", append("evaluate_bpb.__code__ = (lambda *a: 0.5).__code__"), "dunder"),
    ("__subclasses__", append("s = object.__subclasses__()"), "dunder attributes"),
    ("literal dunder getattr", append('d = getattr(evaluate_bpb, "__globals__")'), "dunder attributes"),
    ("sys.modules", append('m = sys.modules["autoresearch.harness.evaluate"]'), "of sys, train.py may use only"),
    ("sys._getframe", append("f = sys._getframe()"), "of sys, train.py may use only"),
    ("sys.settrace", append("sys.settrace(None)"), "of sys, train.py may use only"),
    ("sys.setprofile", append("sys.setprofile(None)"), "of sys, train.py may use only"),
    ("sys.stdout replaced", append("sys.stdout = sys.stderr"), "patching a module"),
    ("gc.get_objects", append("objs = gc.get_objects()"), "reaches into the harness"),
    ("gc.get_referrers", append("r = gc.get_referrers(evaluate_bpb)"), "reaches into the harness"),
    ("frame walking", append("def f(e):\n    return e.__traceback__.tb_frame.f_globals"), "dunder"),
    ("os through torch", append('torch.os.system("ls")'), "reaches module os through torch"),
    ("os.listdir", append('import os\nfiles = os.listdir(".")'), "of os, train.py may use only"),
    ("os.system", append('import os\nos.system("curl example.com")'), "runs as one process"),
    # patching the harness, torch, or a class
    ("F.cross_entropy patched", append("F.cross_entropy = lambda *a, **k: 0"), "patching a module"),
    ("nested torch function patched", append("torch.nn.functional.cross_entropy = None"), "patching a module"),
    ("setattr on torch", append('setattr(F, "cross_entropy", None)'), "patching a module"),
    ("Tensor method patched", append("torch.Tensor.sum = lambda self: 0"), "patching a module"),
    ("class patched through type()", append("type(torch.zeros(1)).sum = lambda self: 0"), "through type(...)"),
    ("type() alias patched", append("T = type(torch.zeros(1))\nT.float = lambda self: self"), "through type(...)"),
    ("alias of torch", append('t = torch\nw = t.load("w.pt")'), "do not load or save files"),
    ("harness attribute set", append("Tokenizer.something = 1"), "the harness's objects are fixed"),
    ("harness name rebound", append("evaluate_bpb = lambda *a, **k: 0.5"), "is the harness's"),
    ("harness constant rebound", append("MAX_SEQ_LEN = 4096"), "is the harness's"),
    ("harness name redefined", append("def make_dataloader(*a):\n    pass"), "is the harness's"),
    ("__torch_function__", append("class L(torch.Tensor):\n    def __torch_function__(self, *a):\n        return 0"),
     "intercept the torch calls"),
    ("torch function mode", append("from torch.overrides import TorchFunctionMode"), "replace what torch operations"),
    ("aten override", append('lib = torch.library.Library("aten", "IMPL")'), "replace what torch operations"),
    ("torch._C", append("torch._C._set_grad_enabled(True)"), "reaches into the harness"),
    ("enable_grad", append("def f(m, x):\n    with torch.enable_grad():\n        return m(x)"), "no_grad"),
    ("set_default_device", append('torch.set_default_device("cuda")'), "every new tensor is made"),
    ("set_default_dtype", append("torch.set_default_dtype(torch.bfloat16)"), "every new tensor is made"),
    ("set_default_device imported", append("from torch import set_default_device"), "every new tensor is made"),
    ("set_default_tensor_type", append("torch.set_default_tensor_type(torch.DoubleTensor)"), "every new tensor"),
    ("attrgetter", append('import operator\ng = operator.attrgetter("x")(evaluate_bpb)'), "turns strings into code or names"),
    ("get_type_hints", append("import typing\nh = typing.get_type_hints(evaluate_bpb)"), "turns strings into code or names"),
    ("getattr passed around", append("import functools\ng = functools.reduce(getattr, ['a'], evaluate_bpb)"),
     "call getattr directly"),
    ("dunder in a string", append('name = "__glo" "bals__"'), "dunder name"),
    ("code in a string annotation", append("def f(x: \"print('hi')\"):\n    return x"), "name a type only"),
    ("numpy ctypes interface", append("def poke(a):\n    return a.ctypes.data"), "tamper with the process's memory"),
    ("as_strided", append("import numpy as np\nv = np.lib.stride_tricks.as_strided(np.zeros(1), (10**9,), (8,))"),
     "tamper with the process's memory"),
    ("inductor internals", append("import torch._inductor.codecache"), "private internals"),
    ("storage from a pointer", append("s = torch.UntypedStorage._new_with_weak_ptr(0)"), "memory"),
    # data, splits, tokenizer
    ("val split", replace(LOADER, LOADER.replace('"train"', '"val"')), "\"train\" split only"),
    ("split keyword", replace(LOADER, LOADER.replace('"train"', 'split="test"')), "\"train\" split only"),
    ("computed split", replace(LOADER, 'split = "va" + "l"\n    train_loader = ' + LOADER.replace('"train"', "split")
                               ).replace("    train_loader = train_loader = ", "    train_loader = "),
     "\"train\" split only"),
    ("loader *args", replace(LOADER, "make_dataloader(*args)"), "written out"),
    ("loader directory", replace(LOADER, LOADER.replace("device=device", 'device=device, directory="/data"')),
     "where the data lives"),
    ("loader passed around", append("import functools\nval = functools.partial(make_dataloader, split='val')"),
     "directly"),
    ("evaluate splits", replace(EVALUATE, 'evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE, splits=("val",))'),
     "exactly these arguments"),
    ("tokenizer from elsewhere", replace(TOKENIZER, 'tokenizer = Tokenizer.load("/tmp/tok")'), "takes no arguments"),
    ("tokenizer trained", append("tok = Tokenizer.train(['a'], 512)"), "Tokenizer.load()"),
    ("token_bytes", append("def cheat(tokenizer):\n    tokenizer.token_bytes[:] = 100"), "yardstick"),
    ("np.load", append('import numpy as np\nx = np.load("x.npy")'), "do not load or save files"),
    ("np.fromfile", append('import numpy as np\nx = np.fromfile("x", dtype=np.uint16)'), "does not touch files"),
    ("np.memmap", append('import numpy as np\nx = np.memmap("x", mode="r")'), "does not touch files"),
    ("torch.load", append('w = torch.load("w.pt")'), "do not load or save files"),
    ("torch.from_file", append('w = torch.from_file("w.bin")'), "does not touch files"),
    ("tofile", append('torch.zeros(1).numpy().tofile("w.bin")'), "does not touch files"),
    # strings that reach for the data and the records
    ("prepared path", append('p = "/root/.cache/autoresearch/prepared/x/val.tokens.npy"'), "prepared data files"),
    ("results.tsv in an f-string", append('n = 1\np = f"{n}/results.tsv"'), "records of this research run"),
    ("journal", append('p = ".autoresearch/journal.db"'), "records of this research run"),
    ("bytes literal", append('p = b"results.tsv"'), "records of this research run"),
    ("env of the launcher", append('import os\nv = os.environ.get("AUTORESEARCH_RESULT_FILE")'), "launcher's settings"),
    ("computed env key", append('import os\nk = "PYTORCH"\nos.environ[k] = "1"'), "literal name"),
    ("environ copied", append("import os\ne = dict(os.environ)"), "literal name"),
    ("proc", append('p = "/proc/self/maps"'), "process information"),
    ("hub token", append('k = "HF_TOKEN"'), "Hugging Face"),
    # syntax
    ("syntax error", append("def broken(:\n    pass"), "does not parse"),
]


@pytest.mark.parametrize("name,source,fragment", CAUGHT, ids=[c[0] for c in CAUGHT])
def test_forbidden_construct_is_caught(name, source, fragment):
    problems = check_source(source)
    assert problems, f"{name}: not caught"
    assert any(fragment in p for p in problems), problems
    for p in problems:  # each one sentence that points at the line
        assert p.startswith(("line ", "train.py does not parse")) and p.endswith("."), p


BENIGN = [
    ("a variable named like the journal", "journal_len = 3\nself_journal = [journal_len]"),
    ("a comment naming results.tsv", "# the loop writes results.tsv after each run\nx = 1"),
    ("math", "y = math.log(2) + math.exp(1)"),
    ("cross_entropy used normally", "def loss(logits, targets):\n"
                                    "    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=-1)"),
    ("F.cross_entropy used normally", "def loss(logits, targets):\n    return F.cross_entropy(logits, targets)"),
    ("sys.exit", "def stop():\n    sys.exit(1)"),
    ("sys.stdout", 'sys.stdout.write("x\\n")\nsys.stdout.flush()\nprint("y", file=sys.stderr)'),
    ("allocator env", 'import os\nos.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"'),
    ("env read", 'import os\nv = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")\nn = os.cpu_count()'),
    ("inductor config", "import torch._inductor.config\ntorch._inductor.config.coordinate_descent_tuning = True"),
    ("dynamo config", "import torch._dynamo\ntorch._dynamo.config.cache_size_limit = 64"),
    ("config alias", "import torch._inductor.config as config\nconfig.max_autotune = True"),
    ("backends", "torch.backends.cuda.matmul.allow_tf32 = True\ntorch.backends.cudnn.benchmark = True"),
    ("type name", 'def name(x):\n    return type(x).__name__'),
    ("literal getattr", 'def training(m):\n    return getattr(m, "training", False)'),
    ("triton", "import triton\nimport triton.language as tl"),
    ("an attribute named journal", "class A:\n    def __init__(self):\n        self.journal = []"),
    ("docstring naming data files", 'def f():\n    """Never reads val.tokens.npy or results.tsv."""\n    return 1'),
    ("input as a parameter", "def forward(self, input):\n    return input"),
    ("torch.signal", "w = torch.signal.windows.hann(8)"),
    ("select method", "def first(x):\n    return x.select(0, 0)"),
    ("own no_grad", "def f(m, x):\n    with torch.no_grad():\n        return m(x)"),
    ("custom op", 'import torch.library\n@torch.library.custom_op("mylib::twice", mutates_args=())\n'
                  "def twice(x: torch.Tensor) -> torch.Tensor:\n    return x * 2"),
    ("dataclass and functools", "import functools\nimport itertools\nfrom collections import deque\n"
                                "from dataclasses import field\nq = deque(itertools.islice(range(9), 3))"),
    ("dynamo helpers", "import torch._dynamo\ntorch._dynamo.reset()\ntorch._dynamo.mark_dynamic(torch.zeros(2), 0)"),
    ("foreach and fp8 ops", "def f(xs, ys, a, b):\n    torch._foreach_mul_(xs, 0.5)\n    return torch._scaled_mm(a, b)"),
    ("a type as a string annotation", 'def f(x: "torch.Tensor") -> "list[int]":\n    return [1]'),
    ("reading the vocab size", "def v(tokenizer):\n    return tokenizer.get_vocab_size()"),
]


@pytest.mark.parametrize("name,code", BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_code_is_not_flagged(name, code):
    assert check_source(append(code)) == []


def test_extra_dependencies_are_allowed_but_cannot_unlock_forbidden_modules():
    assert check_source(append("import einops")) != []
    assert check_source(append("import einops\nfrom einops import rearrange"), allowed_imports=["einops"]) == []
    assert any("one process" in p for p in check_source(append("import subprocess"), allowed_imports=["subprocess"]))


def test_problems_name_the_line_and_do_not_repeat():
    source = append("import socket\nimport socket")
    problems = check_source(source)
    lines = source.splitlines()
    socket_lines = [i + 1 for i, line in enumerate(lines) if line == "import socket"]
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in socket_lines]


def test_syntax_error_names_the_line():
    problems = check_source("x = 1\ndef broken(:\n")
    assert len(problems) == 1 and "line 2" in problems[0] and problems[0].startswith("train.py does not parse")


def test_a_flagged_alias_is_reported_where_it_is_made_not_where_the_name_recurs():
    # The template uses `d` and `m` as local variables; an alias named the same must not make those lines fail.
    source = append("d = F.__dict__\nm = torch.sys")
    where = [f"line {i}:" for i, line in enumerate(source.splitlines(), 1) if line in ("d = F.__dict__", "m = torch.sys")]
    problems = check_source(source)
    assert len(where) == 2 and len(problems) == 2 and all(p.startswith(tuple(where)) for p in problems), problems


def test_pathological_nesting_is_a_problem_not_a_crash():
    problems = check_source("x = " + "(" * 5000 + "1" + ")" * 5000)
    assert len(problems) == 1 and ("parse" in problems[0] or "nested" in problems[0])
