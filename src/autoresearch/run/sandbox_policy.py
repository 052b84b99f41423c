"""What an experiment may do: the sandbox policy (a value that travels to the launcher on its command line), the
launcher's command line, the report it prints, the system paths any Python program with torch needs, and the libc
calls the launcher makes. The launcher itself is run/sandbox.py; its filesystem rules are run/landlock.py."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path

REPORT_PREFIX = "sandbox: "
LINUX = sys.platform.startswith("linux")

SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys",
               "/nix/store", "/gnu/store", "/run/current-system", "/run/opengl-driver")  # last four: Nix/Guix
# Device nodes an experiment may open read-write (glob patterns under /dev): basics, NVIDIA, AMD/Intel (dri, kfd),
# WSL2 (dxg), accelerators (accel, Habana hl*, AWS neuron*, Ascend davinci*), RDMA for NCCL (infiniband). /dev itself
# is listable. /dev/shm is writable only where it is private (POSIX semaphores of torch.compile's worker pool,
# NCCL, CUDA IPC need it): a shared one would carry state from one run to the next.
DEVICE_GLOBS = ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "nvidia*", "nvidia-caps", "dri",
                "kfd", "dxg", "accel", "hl*", "neuron*", "davinci*", "infiniband", "hugepages")
PRIVATE_DIRS = ("/dev/shm", "/tmp")  # what an experiment gets fresh and empty, and may write
# Hugging Face kernels the harness may load (harness.attention_backends.FA3_REPO; a test keeps the two equal). They
# sit in the hub cache, beside its token: only their own folders are opened to the experiment.
KERNEL_REPOS = ("kernels-community/flash-attn3",)


@dataclass(frozen=True)
class Policy:
    """What an experiment may do. JSON-serialisable: it travels to the launcher on its command line."""

    network: bool = False
    read_paths: tuple[str, ...] = ()  # read-only: directories (everything beneath) or single files
    write_paths: tuple[str, ...] = ()  # read-write: the run directory, a compile cache
    die_with_parent: bool = True
    memory_mb: int | None = None  # for the runner to enforce with tree_rss_mb; the launcher ignores it
    filesystem: bool = True  # confine the filesystem at all
    strict: bool = False  # refuse to run (exit 126) when a requested restriction could not be applied
    private_dirs: tuple[str, ...] = ()  # an empty tmpfs over each (mount namespace); writable when private
    hidden_paths: tuple[str, ...] = ()  # covered, unreadable by any path (mount namespace); missing ones are skipped
    readonly_paths: tuple[str, ...] = ()  # bound read-only onto themselves (mount namespace); missing ones skipped
    private_pids: bool = False  # a PID namespace with its own /proc

    def __post_init__(self) -> None:
        # Accept lists and Paths, store a hashable tuple of str.
        for name in ("read_paths", "write_paths", "private_dirs", "hidden_paths", "readonly_paths"):
            object.__setattr__(self, name, tuple(os.fspath(p) for p in getattr(self, name)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown sandbox policy key(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def launcher_argv(policy: Policy, parent_pid: int | None = None) -> list[str]:
    """The prefix the runner puts in front of the experiment's command."""
    pid = os.getpid() if parent_pid is None else parent_pid
    # -P: the working directory (a workspace an agent writes) must not shadow the launcher's own modules.
    return [sys.executable, "-P", "-m", "autoresearch.run.sandbox", "--policy", policy.to_json(),
            "--parent-pid", str(pid), "--"]


def cache_env(compile_cache: str | os.PathLike[str]) -> dict[str, str]:
    """Environment that points torch/triton/CUDA caches into `compile_cache` (a run's private copy, inside a write
    path)."""
    root = Path(compile_cache)
    return {"TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"), "TRITON_CACHE_DIR": str(root / "triton"),
            "TRITON_HOME": str(root / "triton-home"), "CUDA_CACHE_PATH": str(root / "cuda"),
            "PYTORCH_KERNEL_CACHE_PATH": str(root / "torch-kernels")}


@dataclass
class Report:
    network: str = ""
    filesystem: str = ""
    mounts: str = ""
    privileges: str = ""
    parent: str = ""
    gaps: list[str] = field(default_factory=list)  # requested restrictions that were not (fully) applied

    @property
    def complete(self) -> bool:
        return not self.gaps

    def __str__(self) -> str:
        return REPORT_PREFIX + ", ".join(p for p in (self.network, self.filesystem, self.mounts, self.privileges,
                                                      self.parent) if p)


class _Libc:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.lib.syscall.restype = ctypes.c_long

    def call(self, name: str, *args) -> int:
        ret = getattr(self.lib, name)(*args)
        if ret == -1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return ret

    def syscall(self, number: int, *args) -> int:
        return self.call("syscall", ctypes.c_long(number), *args)

    def prctl(self, option: int, arg: int = 0) -> int:
        return self.call("prctl", ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                         ctypes.c_ulong(0))


_libc = cache(_Libc)  # finding libc runs ldconfig: once is enough


def system_read_paths(policy: Policy | None = None) -> list[str]:
    """System and Python directories: what any Python program with torch needs to start and to compile kernels.

    The launcher's own sys.path is included (stdlib, site-packages, an editable install's src), except its
    working directory: `python -m` puts the cwd first, and that must not widen the sandbox. So is the directory
    holding this package, for editable installs that map it with an import hook rather than a sys.path entry
    (other packages installed that way are not found: add their directories to read_paths). A sys.path entry
    that is /, the home directory, or holds one of the policy's paths (PYTHONPATH=the workspace) is left out.
    """
    cwd = os.getcwd()
    held = [os.path.abspath(p) for p in (*policy.read_paths, *policy.write_paths)] if policy else []
    paths = list(SYSTEM_DIRS) + kernel_cache_paths()
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable)),
              str(Path(__file__).resolve().parents[2])]  # src/, holding this package
    too_wide = {"/", os.path.expanduser("~"), cwd}
    for p in filter(None, sys.path):
        p = os.path.abspath(p)
        if p not in too_wide and not any(h == p or h.startswith(p.rstrip("/") + "/") for h in held):
            paths.append(p)
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(os.path.abspath(p), None)
    return [p for p in seen if os.path.exists(p)]


def kernel_cache_paths() -> list[str]:
    """The local hub-cache folders of KERNEL_REPOS that exist: compiled attention kernels `prepare` downloaded.

    An experiment has no network, so the harness loads FA3 from here; $KERNELS_CACHE wins over the hub cache,
    as in the `kernels` package. Both folder layouts are listed: `kernels--org--name` and the older `models--`.
    """
    try:
        from huggingface_hub import constants
    except ImportError:
        return []
    root = os.environ.get("KERNELS_CACHE") or constants.HF_HUB_CACHE
    folders = [os.path.join(root, f"{kind}--{repo.replace('/', '--')}") for repo in KERNEL_REPOS
               for kind in ("kernels", "models")]
    return [f for f in folders if os.path.isdir(f)]
