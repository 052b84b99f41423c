"""Experiments on this machine: one worker process per experiment, each worker on its own device.

Workers default to one per visible GPU (the cuda profiles) and to 1 on CPU and MPS. `--per-device K` puts K
workers on each GPU. CPU workers split the cores between them (OMP_NUM_THREADS), and all workers split the memory
limit an experiment gets when autoresearch.toml leaves it automatic, so two experiments side by side cannot
together take more than one alone could.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace

from autoresearch.backends.base import BackendError, Slot
from autoresearch.backends.worker import Handle, run_isolated
from autoresearch.run.result import THREAD_VARS, Experiment, Progress, RunResult


class LocalBackend:
    name = "local"

    def __init__(self, profile: str, workers: int | None = None, per_device: int = 1,
                 gpus: list[str] | None = None, cores: int | None = None) -> None:
        self.profile = profile
        if gpus is None:  # only a GPU profile asks torch (seconds to import) how many GPUs there are
            gpus = visible_gpus() if profile.startswith("cuda") else []
        cores = cores or os.cpu_count() or 1
        self._slots = plan_slots(profile, workers, per_device, gpus, cores)
        self.notes = sharing_notes(self._slots, cores)  # for the user, before the run starts
        self._handles: set[Handle] = set()
        self._lock = threading.Lock()
        self._closed = False

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def run(self, exp: Experiment, slot: Slot, on_line: Callable[[str], None] | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> RunResult:
        handle = Handle()
        with self._lock:
            if self._closed:
                return RunResult(status="interrupted", reason="the orchestrator is stopping")
            self._handles.add(handle)
        try:
            return run_isolated(with_share(exp, slot, len(self._slots)), on_line, on_progress, handle)
        finally:
            with self._lock:
                self._handles.discard(handle)

    def cancel(self) -> None:
        with self._lock:
            self._closed = True
            handles = list(self._handles)
        for h in handles:
            h.cancel()

    def close(self) -> None:
        self.cancel()


def with_share(exp: Experiment, slot: Slot, workers: int) -> Experiment:
    """The experiment as it runs on `slot`: the slot's environment, and its share of the machine's memory."""
    settings = exp.settings
    if workers > 1 and not settings.memory_limit_mb and settings.memory_limit:
        settings = replace(settings, memory_limit_mb=max(1, settings.memory_limit // workers))
    return replace(exp, env=(*slot.env, *exp.env), settings=settings)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (ids or UUIDs); [] without CUDA."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch, a broken driver: no GPU
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if "CUDA_VISIBLE_DEVICES" in os.environ else [str(i) for i in range(count)]


def sharing_notes(slots: list[Slot], cores: int) -> list[str]:
    """What workers side by side on one CPU (or one MPS device) do not buy: they split it, they add none of it."""
    if len(slots) < 2 or slots[0].device.startswith("cuda"):
        return []
    n = len(slots)
    if slots[0].device == "mps":
        return [f"{n} workers share the one MPS device: side by side they add no compute, so each experiment trains "
                "slower (under a time budget: on less), and the run gains only what one experiment leaves unused"]
    threads = max(1, cores // n)
    return [f"{n} workers share the {cores} CPU cores ({threads} thread{'s' if threads > 1 else ''} each): side by "
            "side they add no compute, so each experiment trains slower (under a time budget: on less), and the run "
            "gains only what one experiment leaves of the cores unused; --workers 1 gives one experiment all of them"]


def plan_slots(profile: str, workers: int | None, per_device: int, gpus: list[str], cores: int) -> list[Slot]:
    """Which device each worker gets. Raises BackendError when the machine cannot hold the workers asked for."""
    if profile.startswith("cuda"):
        if not gpus:
            raise BackendError(f"the workspace's profile is {profile!r} but no GPU is visible here: check "
                               "nvidia-smi and CUDA_VISIBLE_DEVICES")
        n = workers or len(gpus) * per_device
        if n > len(gpus) * per_device:
            raise BackendError(f"--workers {n} needs {-(-n // per_device)} GPUs at --per-device {per_device}, and "
                               f"{len(gpus)} are visible: lower --workers, or share GPUs with --per-device "
                               f"{-(-n // len(gpus))}")
        return [Slot(index=k + 1, device=f"cuda:{k // per_device}",
                     env=(("CUDA_VISIBLE_DEVICES", gpus[k // per_device]),),
                     sharing=min(per_device, n - (k // per_device) * per_device)) for k in range(n)]
    n = workers or 1
    device = "mps" if profile == "mps" else "cpu"
    threads = str(max(1, cores // n))
    env = tuple((v, threads) for v in THREAD_VARS) if n > 1 else ()
    return [Slot(index=k + 1, device=device, env=env, sharing=n) for k in range(n)]
