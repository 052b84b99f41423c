"""Notice when train.py replaces the harness's objects, or the torch functions the metric relies on, at run time.

At import the harness records the identity of every public and private name of its modules, and of the torch
operations the evaluation calls; evaluate_bpb compares before scoring. Replacing one of them (monkeypatching
evaluate_bpb, the loader, F.cross_entropy, Tensor.sum ...) gets the run refused, whatever it then reports.
This is one layer of several: the static check rejects such code before it runs, and the sandbox limits what a
run can reach.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

HARNESS_MODULES = ("autoresearch.harness", "autoresearch.harness.evaluate", "autoresearch.harness.dataloader",
                   "autoresearch.harness.channel", "autoresearch.harness.constants", "autoresearch.harness.probe",
                   "autoresearch.harness.tokenizer", "autoresearch.harness.device", "autoresearch.harness.integrity",
                   "autoresearch.harness.meter", "autoresearch.harness.attention",
                   "autoresearch.paths")  # where the evaluation finds val/test: outside the package, same guard
TORCH_OBJECTS = {
    "F.cross_entropy": (F, "cross_entropy"),
    "F.log_softmax": (F, "log_softmax"),
    "torch.zeros": (torch, "zeros"),
    "torch.stack": (torch, "stack"),
    "torch.arange": (torch, "arange"),
    "torch.from_numpy": (torch, "from_numpy"),
    "torch.is_tensor": (torch, "is_tensor"),
    **{f"Tensor.{name}": (torch.Tensor, name) for name in
       ("sum", "double", "float", "long", "reshape", "view", "to", "size", "dim", "abs", "max", "clone",
        "tolist", "__getitem__", "__mul__", "__gt__", "__sub__", "__iadd__", "__add__")},
}

_snapshot: dict[str, int] = {}


def _current() -> dict[str, int]:
    ids: dict[str, int] = {}
    for mod_name in HARNESS_MODULES:
        module = sys.modules.get(mod_name)
        if module is None:
            continue
        ids[f"{mod_name}:module"] = id(module)
        for attr, value in vars(module).items():
            if not (attr.startswith("__") and attr.endswith("__")):
                ids[f"{mod_name}.{attr}"] = id(value)
    for label, (owner, attr) in TORCH_OBJECTS.items():
        ids[label] = id(getattr(owner, attr, None))
    return ids


def snapshot() -> None:
    """Called once when the harness has been imported completely, before train.py's own code runs."""
    _snapshot.clear()
    _snapshot.update(_current())


def changed() -> list[str]:
    """Names recorded at import whose object is no longer the same (new names are ignored)."""
    now = _current()
    module_swapped = [k.removesuffix(":module") for k, v in _snapshot.items()
                      if k.endswith(":module") and now.get(k) not in (None, v)]
    replaced = [k for k, v in _snapshot.items() if not k.endswith(":module") and k in now and now[k] != v
                and not _mutable_state(k)]
    removed = [k for k in _snapshot if k not in now and not k.endswith(":module")]
    return sorted(set(module_swapped + replaced + removed))


def _mutable_state(name: str) -> bool:
    """Module globals the harness itself rebinds while running (not tampering)."""
    return name in {"autoresearch.harness.channel._fd", "autoresearch.harness.channel._answer_fd"}
