"""What a private compile cache per run costs: seeding a run's copy, deleting it, and publishing a seed.

Each run starts from a copy of the workspace's seed (run/compile_cache.py) and deletes it afterwards; a baseline
run also publishes its cache as the new seed (a copy and two renames). This times the three on synthetic trees
shaped like inductor + triton caches (many small files, a few large ones), and, with --real, on the cache that
torch.compile leaves after compiling a tiny model on this machine's CPU. Prints one line per size.

    python bench/compile_cache.py [--sizes 2000:100,10000:500] [--real] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.run import compile_cache


def synthetic(root: Path, files: int, megabytes: int, seed: int = 0) -> tuple[int, int]:
    """`files` files of `megabytes` MB in all: 95% small (.py/.json/.ttir source and metadata, a few KB), the
    rest large (.so/.cubin/.pkl binaries) holding most of the bytes, in hashed two-level directories."""
    rng = random.Random(seed)
    small_n = int(files * 0.95)
    small_size = 4096
    large_n = files - small_n
    large_size = max(1, (megabytes * 2**20 - small_n * small_size) // max(1, large_n))
    total = 0
    for i in range(files):
        kind = "inductor" if i % 2 else "triton"
        h = f"{rng.getrandbits(64):016x}"
        d = root / kind / h[:2] / h
        d.mkdir(parents=True, exist_ok=True)
        size = small_size if i < small_n else large_size
        (d / (f"k{i}.py" if i < small_n else f"k{i}.so")).write_bytes(os.urandom(size))
        total += size
    return files, total


def real_cache(root: Path) -> tuple[int, int]:
    """Compile a tiny MLP with torch.compile on the CPU, its caches pointed into `root`."""
    code = ("import torch\n"
            "m = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))\n"
            "f = torch.compile(m)\n"
            "x = torch.randn(8, 64, requires_grad=True)\n"
            "f(x).sum().backward()\n")
    env = {**os.environ, **compile_cache_env(root)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=900)
    return count(root)


def compile_cache_env(root: Path) -> dict[str, str]:
    from autoresearch.run.sandbox import cache_env

    return cache_env(root)


def count(root: Path) -> tuple[int, int]:
    files = size = 0
    for here, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(here, name)).st_size
    return files, size


def measure(label: str, seed: Path, work: Path) -> None:
    files, size = count(seed)
    private = work / "run" / "compile-cache"
    os.sync()
    t0 = time.perf_counter()
    compile_cache.seed_private(seed, private)
    t1 = time.perf_counter()
    compile_cache.discard(private)
    t2 = time.perf_counter()
    compile_cache.seed_private(seed, private)
    (private / "new-entry").write_bytes(b"x")  # something new, so that publishing copies
    new_seed = work / "seed2"
    t3 = time.perf_counter()
    compile_cache.publish(private, new_seed)
    t4 = time.perf_counter()
    compile_cache.discard(private)
    shutil.rmtree(new_seed, ignore_errors=True)
    print(f"{label:<28} {files:>7,} files {size / 2**20:>7.1f} MB | seed a run's copy {t1 - t0:6.2f} s "
          f"({size / 2**20 / max(t1 - t0, 1e-9):5.0f} MB/s) | delete it {t2 - t1:5.2f} s | publish a seed "
          f"{t4 - t3:5.2f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000:100,10000:500", help="FILES:MB pairs of synthetic caches")
    ap.add_argument("--real", action="store_true", help="also a real cache: torch.compile of a tiny model on CPU")
    ap.add_argument("--dir", type=Path, help="where to build the trees (default: a temporary directory)")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {os.cpu_count()} CPUs | load {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} | python {sys.version.split()[0]}")
    base = Path(tempfile.mkdtemp(prefix="compile-cache-bench-", dir=args.dir))
    try:
        for pair in args.sizes.split(","):
            files, mb = (int(x) for x in pair.split(":"))
            seed = base / f"synthetic-{files}"
            synthetic(seed, files, mb)
            measure(f"synthetic {files}/{mb} MB", seed, base / f"work-{files}")
            shutil.rmtree(seed, ignore_errors=True)
        if args.real:
            seed = base / "real"
            t0 = time.perf_counter()
            real_cache(seed)
            print(f"(torch.compile of a tiny MLP, forward and backward, on CPU: {time.perf_counter() - t0:.1f} s)")
            measure("real: tiny MLP on CPU", seed, base / "work-real")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
