"""Device memory shared between the scorer and train.py's process, through the CUDA driver's IPC handles.

The scorer allocates each buffer with cuMemAlloc (an allocation of its own: the experiment can reach nothing else
of the scorer's memory through it) and hands over its IPC handle; the experiment opens it and sees the same
device memory. Both sides wrap the pointer as a torch tensor through __cuda_array_interface__, so logits go from
the model to the scorer without a host copy.

torch's own tensor sharing (torch.multiprocessing) is not used: it keeps a reference count in a /dev/shm file,
and the experiment gets a private /dev/shm, and unpickling what the other side sends is not something the scorer
may do.
"""

from __future__ import annotations

import ctypes

CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1
TYPESTR = {"int64": "<i8", "float32": "<f4"}


class IpcHandle(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_char * 64)]


class CudaError(Exception):
    pass


_lib = None


def _driver():
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise CudaError(f"the CUDA driver library is not loadable: {e}") from None
    return _lib


def _check(name: str, *args) -> None:
    code = getattr(_driver(), name)(*args)
    if code != 0:
        raise CudaError(f"{name} failed with CUDA driver error {code}")


def _current(device) -> None:
    """Make torch's primary context of `device` current on this thread: the driver calls act on it."""
    import torch

    torch.cuda.set_device(device)
    torch.cuda.synchronize(device)  # initialises the context if nothing has yet


class _Array:
    """A device pointer as a CUDA array, for torch.as_tensor (which keeps this object alive with the tensor)."""

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: str) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": TYPESTR[dtype], "data": (ptr, False),
                                         "version": 2, "strides": None}


def allocate(nbytes: int, device) -> tuple[int, bytes]:
    """(device pointer, IPC handle bytes) of a fresh allocation of `nbytes` on `device` (the scorer's side)."""
    _current(device)
    ptr = ctypes.c_uint64()
    _check("cuMemAlloc_v2", ctypes.byref(ptr), ctypes.c_size_t(nbytes))
    _check("cuMemsetD8_v2", ptr, ctypes.c_ubyte(0), ctypes.c_size_t(nbytes))
    handle = IpcHandle()
    _check("cuIpcGetMemHandle", ctypes.byref(handle), ptr)
    return ptr.value, ctypes.string_at(ctypes.addressof(handle), 64)  # .reserved would stop at a zero byte


def open_handle(handle: bytes, device) -> int:
    """The device pointer of another process's allocation (the experiment's side)."""
    if len(handle) != 64:
        raise CudaError(f"an IPC handle has 64 bytes, got {len(handle)}")
    _current(device)
    h = IpcHandle()
    ctypes.memmove(ctypes.addressof(h), handle, 64)
    ptr = ctypes.c_uint64()
    _check("cuIpcOpenMemHandle_v2", ctypes.byref(ptr), h, ctypes.c_uint(CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS))
    return ptr.value


def tensor(ptr: int, offset: int, shape: tuple[int, ...], dtype: str, device):
    """A torch tensor over `shape` elements of `dtype` at `ptr + offset` on `device` (no copy)."""
    import torch

    return torch.as_tensor(_Array(ptr + offset, shape, dtype), device=device)
