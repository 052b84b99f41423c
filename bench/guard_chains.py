"""Which attribute chains of the modules train.py may import reach what it must not: walk the real objects.

For each root (the standard-library modules of guard.ALLOWED_MODULES, torch and numpy) follows every module
attribute, public and private, breadth first, to --depth, and lists the chains whose object is one of TARGETS
(sys, os, builtins, importlib, sys.modules, open, torch.save/load, numpy.load/fromfile, ctypes) under a name
other than its own, with whether the static check refuses `import ROOT; value = CHAIN`. Exit code 1 if any
is let through.

    python bench/guard_chains.py [--depth 3] [--all]      # --all: print every chain, not a sample per target
"""

from __future__ import annotations

import argparse
import builtins
import collections
import ctypes
import importlib
import os
import sys
import time
import types
import warnings


def targets() -> dict[int, str]:
    import numpy
    import torch

    named = {"sys": sys, "os": os, "builtins": builtins, "importlib": importlib, "ctypes": ctypes,
             "sys.modules": sys.modules, "open": builtins.open, "torch.save": torch.save, "torch.load": torch.load,
             "numpy.load": numpy.load, "numpy.fromfile": numpy.fromfile}
    return {id(v): k for k, v in named.items()}


def roots() -> list[str]:
    from autoresearch.run.guard import ALLOWED_MODULES

    out = []
    for name in sorted(ALLOWED_MODULES - {"__future__"}):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        out.append(name)
    return out


def walk(depth: int = 3, private: bool = True) -> dict[str, list[str]]:
    """target name -> chains (rooted in an allowed module) that reach it under another name."""
    want = targets()
    found: dict[str, list[str]] = collections.defaultdict(list)
    seen: set[int] = set()
    queue = collections.deque((r, sys.modules[r], 0) for r in roots())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases warn when read
        while queue:
            path, obj, d = queue.popleft()
            for name, value in list(vars(obj).items()):
                if name.startswith("__") or (name.startswith("_") and not private):
                    continue
                chain = f"{path}.{name}"
                if id(value) in want and want[id(value)] != chain:
                    found[want[id(value)]].append(chain)
                if isinstance(value, types.ModuleType) and id(value) not in seen and d + 1 < depth:
                    seen.add(id(value))
                    queue.append((chain, value, d + 1))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--all", action="store_true")
    args = ap.parse_args()
    from autoresearch.run.guard import check_source

    t0 = time.perf_counter()
    found = walk(args.depth)
    t1 = time.perf_counter()
    missed = []
    for target, chains in sorted(found.items()):
        chains.sort(key=lambda c: (len(c), c))
        let_through = [c for c in chains if not check_source(f"import {c.split('.')[0]}\nvalue = {c}\n")]
        missed += let_through
        shown = chains if args.all else chains[:6]
        print(f"{target:<14} {len(chains):>4} chains, {len(let_through)} let through; e.g. {', '.join(shown)}")
    print(f"\nwalk {t1 - t0:.2f}s, checks {time.perf_counter() - t1:.2f}s; "
          f"{sum(map(len, found.values()))} chains, {len(missed)} let through by the static check")
    for chain in missed:
        print(f"  LET THROUGH: {chain}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
