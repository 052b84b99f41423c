"""The static check is allow-list based where it matters: no private name of any module, and no way from a
namespace back to a module (or to a refused function) under another name. The bypass shapes of the hostile
review (issue 9), and every such chain a walk of the real modules finds (bench/guard_chains.py)."""

from __future__ import annotations

import pytest
from guard_chains import walk
from test_guard import append

from autoresearch.run.guard import check_source

MODULE_ELSEWHERE = "under another name"
PRIVATE = "is a private name of"

BYPASSES = [
    # (a) sys.modules through a private or public alias of sys that a standard-library module carries
    ("collections._sys", "import collections\nh = collections._sys.modules['autoresearch.harness.channel']",
     "_sys is a private name of collections"),
    ("functools._thread", "import functools\nt = functools._thread", "_thread is a private name of functools"),
    ("from-import of a private alias", "from collections import _sys", PRIVATE),
    ("private alias by getattr", "import collections\ns = getattr(collections, '_sys')", PRIVATE),
    ("typing.sys", "import typing\nm = typing.sys.modules", "reaches module sys through typing"),
    ("warnings.sys", "import warnings\nm = warnings.sys", "reaches module sys"),
    ("builtins under a public alias", "import enum\nf = enum.bltns.open", "module builtins under another name"),
    ("F.importlib", "i = F.importlib.import_module('autoresearch.harness.channel')", "reaches module importlib"),
    # (b) a private numpy module that reads files, the path built by concatenation
    ("numpy private reader", "import numpy as np\nx = np.lib._npyio_impl.load('/root/.cache/' + 'autoresearch/x')",
     "_npyio_impl is a private name of numpy.lib"),
    ("numpy._core", "import numpy as np\nx = np._core.records.fromrecords", "_core is a private name of numpy"),
    ("numpy through torch.storage", "x = torch.storage.np.load('a' + 'b')", "module numpy under another name"),
    ("numpy.ma.mrecords", "import numpy as np\nx = np.ma.mrecords.fromtextfile('a' + 'b')", "does not touch files"),
    # (c) torch.save / torch.load through a configuration namespace the check allows
    ("inductor config carries torch", "import torch._inductor.config\ntorch._inductor.config.torch.save({}, 'w')",
     "torch._inductor.config.torch is module torch " + MODULE_ELSEWHERE),
    ("dynamo config carries os", "import torch._dynamo\ntorch._dynamo.config.os.system('x')", "reaches module os"),
    ("backends carries torch", "w = torch.backends.cuda.torch.load('w')", "module torch " + MODULE_ELSEWHERE),
    ("from-import of torch out of backends", "from torch.backends.cuda import torch as t2", MODULE_ELSEWHERE),
    ("config alias", "import torch._inductor.config as cfg\nw = cfg.torch.load('w')", MODULE_ELSEWHERE),
    ("namespace alias", "b = torch.backends.cuda\nw = b.torch.load('w')", MODULE_ELSEWHERE),
    ("store through a config namespace", "import torch._inductor.config\ntorch._inductor.config.torch.load = None",
     MODULE_ELSEWHERE),
    ("private name after a config", "import torch._inductor.config\nx = torch._inductor.config._save_config",
     PRIVATE),
    ("torch.torch", "t = torch.torch.load", "module torch " + MODULE_ELSEWHERE),
    # found by walking the real objects
    ("ctypes under torch.xpu", "c = torch.xpu.cast", "torch.xpu.cast is ctypes.cast"),
    ("collect_env runs commands", "torch.utils.collect_env.run('ls')", "runs as one process"),
    ("private name of math", "import math\nx = math._x", "_x is a private name of math"),
    ("module in a container", "m = [torch][0]\nc = m._C", "not a value to pass around"),
    ("module as an argument", "def f(m):\n    return m\n\n\nc = f(np_mod := torch)", "not a value to pass around"),
]


@pytest.mark.parametrize("name,code,fragment", BYPASSES, ids=[b[0] for b in BYPASSES])
def test_bypass_is_refused_with_advice(name, code, fragment):
    problems = check_source(append(code))
    assert any(fragment in p for p in problems), problems
    assert all(p.startswith("line ") and p.endswith(".") for p in problems), problems


ALLOWED = [
    ("numpy submodule", "import numpy as np\nr = np.random.default_rng(0)"),
    ("nested compiler config", "import torch._inductor.config\ntorch._inductor.config.triton.cudagraphs = True"),
    ("nn.Module.__init__", "class M(nn.Module):\n    def __init__(self):\n        nn.Module.__init__(self)"),
    ("torch.__version__", "v = torch.__version__"),
    ("collections.abc", "import collections.abc\nx = collections.abc.Mapping"),
    ("flex attention", "from torch.nn.attention.flex_attention import flex_attention"),
    ("backend flags", "torch.backends.cuda.matmul.allow_tf32 = True\ntorch.backends.cuda.enable_flash_sdp(True)"),
    ("a parameter named like a module", "def f(torch):\n    return torch"),
    ("a private attribute of one's own object", "class A:\n    def __init__(self):\n        self._x = 1\n"
                                                 "        self._y = self._x"),
    ("torch.random", "torch.random.manual_seed(0)"),
]


@pytest.mark.parametrize("name,code", ALLOWED, ids=[a[0] for a in ALLOWED])
def test_public_api_stays_allowed(name, code):
    assert check_source(append(code)) == []


def test_every_chain_a_walk_of_the_real_modules_finds_is_refused():
    found = walk(depth=3)
    for target in ("sys", "os", "builtins", "importlib", "torch.save", "torch.load", "numpy.load"):
        assert found.get(target), f"the walk found no chain to {target}: the test would prove nothing"
    let_through = [c for chains in found.values() for c in chains
                   if not check_source(f"import {c.split('.')[0]}\nvalue = {c}\n")]
    assert not let_through, let_through
