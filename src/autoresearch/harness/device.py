"""Device choice, autocast dtype, and the peak FLOP/s that MFU is measured against."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from functools import cache

import torch

DEVICE_ENV = "AUTORESEARCH_DEVICE"

# Dense bf16 tensor-core peak FLOP/s (no sparsity), from the vendors' data sheets. Matched by substring of
# torch.cuda.get_device_name(); first match wins, so more specific names come first.
GPU_PEAK_BF16: list[tuple[str, float]] = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("B100", 1750e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("A6000", 155e12),
    ("RTX 5090", 209e12),
    ("RTX 4090", 165e12),
    ("RTX 4080", 97e12),
    ("RTX 3090", 71e12),
    ("RTX 3080", 59e12),
    ("T4", 65e12),  # fp16; T4 has no bf16 tensor cores
]


def get_device() -> torch.device:
    """cuda > mps > cpu; $AUTORESEARCH_DEVICE overrides (e.g. `cpu` to test the CPU path on a GPU machine)."""
    forced = os.environ.get(DEVICE_ENV)
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware computes it fast; None (plain fp32) on CPU, where bf16 matmuls are emulated."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.bfloat16
    return None


def autocast_context(device: torch.device | str):
    device = torch.device(device)
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # this process's GPU, not whichever is current
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak memory of this process on `device` so far: what the harness reports as the run's memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    # CPU: peak resident set size of this process (KiB on Linux, bytes on macOS).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


@cache
def peak_flops(device: torch.device | str) -> float:
    """Peak FLOP/s for MFU: the data-sheet figure of a known GPU, else a measured matmul rate (said loudly)."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_BF16:
            if key in name:
                return flops
        measured = _measure_matmul_flops(device, torch.bfloat16, 4096)
        print(f"peak_flops: {name!r} is not in the table; MFU is relative to a measured bf16 matmul rate "
              f"of {measured / 1e12:.1f} TFLOP/s", flush=True)
        return measured
    dtype = torch.bfloat16 if device.type == "mps" else torch.float32
    # On a CPU a 1024 matmul is already at the machine's rate (single-threaded it runs faster than a 2048 one, which
    # leaves the cache), and it costs 0.2 s of each run's start-up instead of 0.8 s.
    measured = (_measure_matmul_flops(device, dtype, 2048) if device.type == "mps"
                else _measure_matmul_flops(device, dtype, 1024, seconds=0.1))
    print(f"peak_flops: {device.type} has no data-sheet figure; MFU is relative to a measured "
          f"{str(dtype).removeprefix('torch.')} matmul rate of {measured / 1e9:.1f} GFLOP/s", flush=True)
    return measured


def _measure_matmul_flops(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 0.25) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm up kernels and allocator
    synchronize(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        synchronize(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return 2 * n**3 * reps / elapsed
