"""The scorer's side of the shared memory: where inputs go out and logits come back (see harness/wire.py).

On a GPU the scorer allocates device memory and hands the experiment its CUDA IPC handle: the logits stay on the
device. When the experiment cannot open it (no CUDA IPC between the two processes, a driver that refuses), both
sides fall back to a shared CPU buffer and the result says which transport was used.
"""

from __future__ import annotations

import os

import numpy as np

from autoresearch.harness import wire


class ShmTransport:
    kind = "shm"

    def __init__(self, sock, rows: int, T: int, V: int) -> None:  # noqa: N803
        _, _, total = wire.slot_layout(rows, T, V)
        fd = wire.shared_file(total)
        try:
            self.slots = wire.SharedSlots(fd, rows, T, V)
            wire.send(sock, "layout", fds=(fd,), rows=rows, T=T, V=V, slots=wire.SLOTS, transport=self.kind)
        finally:
            os.close(fd)  # the mapping keeps the memory; the experiment has its own descriptor now
        _expect_ready(sock, self.kind)

    def put_inputs(self, slot: int, x: np.ndarray) -> None:
        self.slots.inputs[slot][...] = x

    def take_logits(self, slot: int) -> np.ndarray:
        return self.slots.logits[slot].copy()  # read once: the other side may write the slot again at any time


class CudaTransport:
    kind = "cuda-ipc"

    def __init__(self, sock, rows: int, T: int, V: int, device: str) -> None:  # noqa: N803
        import torch

        from autoresearch.harness import cuda_ipc

        self.device = torch.device(device)
        in_bytes, logit_bytes, total = wire.slot_layout(rows, T, V)
        self.ptr, handle = cuda_ipc.allocate(total, self.device)
        self.inputs, self.logits = [], []
        for s in range(wire.SLOTS):
            base = s * (in_bytes + logit_bytes)
            self.inputs.append(cuda_ipc.tensor(self.ptr, base, (rows, T), "int64", self.device))
            self.logits.append(cuda_ipc.tensor(self.ptr, base + in_bytes, (rows, T, V), "float32", self.device))
        wire.send(sock, "layout", rows=rows, T=T, V=V, slots=wire.SLOTS, transport=self.kind,
                  cuda={"handle": handle.hex(), "device": str(self.device)})

    def put_inputs(self, slot: int, x: np.ndarray) -> None:
        import torch

        self.inputs[slot].copy_(torch.from_numpy(np.ascontiguousarray(x)))
        torch.cuda.synchronize(self.device)  # in device memory before the experiment is told

    def take_logits(self, slot: int):
        return self.logits[slot].clone()  # a device copy, read once


def _expect_ready(sock, kind: str) -> dict:
    message = wire.receive(sock)
    if message["op"] != "ready" or message.get("transport") != kind:
        raise wire.WireError(f"the evaluation client answered {message['op']} {message.get('transport')}, "
                             f"not ready {kind}")
    return message


def open_transport(sock, rows: int, T: int, V: int, device: str):  # noqa: N803
    """CUDA IPC for a model on a CUDA device, when both sides can open it; shared CPU memory otherwise."""
    if device.startswith("cuda"):
        try:
            transport = CudaTransport(sock, rows, T, V, device)
        except Exception as e:  # noqa: BLE001 - no CUDA here, or no IPC: say so, and share host memory
            wire.log(f"CUDA IPC unavailable ({type(e).__name__}: {e}); logits will pass through host memory")
            wire.send(sock, "layout", transport="none", reason=str(e)[:300])
        else:
            message = wire.receive(sock)
            if message["op"] == "ready" and message.get("transport") == transport.kind:
                return transport
            wire.log(f"the experiment could not open CUDA IPC ({message.get('reason', '?')}); "
                     "logits will pass through host memory")
    return ShmTransport(sock, rows, T, V)
