"""The line between train.py's process and the scorer: framed JSON on a unix socket, tensors in shared memory.

The runner connects the two processes with a socket pair before either starts. Everything the scorer needs from
the experiment is logits; everything the experiment needs from the scorer is input batches. Both travel through
shared memory that the scorer allocates: a memfd (or an unlinked file) handed over with SCM_RIGHTS on a CPU, a
CUDA allocation opened through CUDA IPC on a GPU, so logits never leave the device there.

The conversation, one message per line of this table (client = evaluate_bpb in train.py's process):

    client  hello   {batch_size, device}                     asks to be scored; the scorer notes the time
    scorer  layout  {rows, T, V, slots, transport, [cuda]}   + the memfd for transport "shm"
    client  ready   {transport}                              "shm" when CUDA IPC could not be opened (fallback)
    scorer  batch   {slot, seq}                              inputs (rows, T) int64 are in that slot
    client  done    {slot, seq}                              logits (rows, T, V) float32 are in that slot
    client  error   {message}                                the model failed; the scorer gives no figure
    scorer  end     {val_bpb} | refused {reason}             the last message

Frames are a 4-byte big-endian length and a JSON object; a frame longer than MAX_FRAME ends the conversation.
Nothing here trusts the other side: the scorer re-reads nothing it wrote, and copies logits out of shared memory
once before using them.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import struct
import sys

SCORER_ENV = "AUTORESEARCH_SCORER_FD"
MAX_FRAME = 1 << 16
SLOTS = 2  # two batches in flight: the model computes one while the scorer scores the other
ALIGN = 64


class WireError(Exception):
    """The other side broke the protocol or went away."""


class WireTimeout(WireError):
    """No message within the time allowed."""


def send(sock: socket.socket, op: str, fds: tuple[int, ...] = (), **data) -> None:
    body = json.dumps({"op": op, **data}, allow_nan=True).encode()
    frame = struct.pack(">I", len(body)) + body
    try:
        if fds:
            socket.send_fds(sock, [frame], list(fds))
        else:
            sock.sendall(frame)
    except OSError as e:
        raise WireError(f"the other side went away ({e})") from None


def _read_exact(sock: socket.socket, n: int, fds: list[int] | None = None) -> bytes:
    out = b""
    while len(out) < n:
        if fds is not None and not out:
            chunk, got, _, _ = socket.recv_fds(sock, n - len(out), 4)
            fds.extend(got)
        else:
            chunk = sock.recv(n - len(out))
        if not chunk:
            raise WireError("the other side closed the connection")
        out += chunk
    return out


def receive(sock: socket.socket, fds: list[int] | None = None, timeout: float | None = None) -> dict:
    """The next message; with `fds`, file descriptors sent along with it are appended there. WireTimeout when none
    comes within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        (length,) = struct.unpack(">I", _read_exact(sock, 4, fds))
        if length > MAX_FRAME:
            raise WireError(f"a frame of {length} bytes (at most {MAX_FRAME})")
        message = json.loads(_read_exact(sock, length))
    except TimeoutError:
        raise WireTimeout(f"no answer within {timeout:.1f}s") from None
    except (OSError, ValueError) as e:
        raise WireError(f"unreadable message ({e})") from None
    finally:
        sock.settimeout(None)
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise WireError("a message without an op")
    return message


def slot_layout(rows: int, T: int, V: int) -> tuple[int, int, int]:  # noqa: N803
    """(bytes of one slot's inputs, bytes of one slot's logits, total bytes of all slots), each part aligned."""
    def up(n: int) -> int:
        return (n + ALIGN - 1) // ALIGN * ALIGN

    inputs, logits = up(rows * T * 8), up(rows * T * V * 4)
    return inputs, logits, SLOTS * (inputs + logits)


def shared_file(size: int) -> int:
    """A file descriptor of `size` zeroed bytes that exists nowhere in the filesystem."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("autoresearch-scorer", os.MFD_CLOEXEC)
    else:  # macOS: an unlinked temporary file
        import tempfile

        with tempfile.NamedTemporaryFile(delete=False) as f:
            fd = os.dup(f.fileno())
        os.unlink(f.name)
    os.ftruncate(fd, size)
    return fd


class SharedSlots:
    """numpy views of the slots in a shared mapping: inputs[s] (rows, T) int64, logits[s] (rows, T, V) float32."""

    def __init__(self, fd: int, rows: int, T: int, V: int) -> None:  # noqa: N803
        import numpy as np

        in_bytes, logit_bytes, total = slot_layout(rows, T, V)
        if os.fstat(fd).st_size < total:
            raise WireError(f"the shared buffer holds {os.fstat(fd).st_size} bytes, the layout needs {total}")
        self.map = mmap.mmap(fd, total)
        self.inputs, self.logits = [], []
        for s in range(SLOTS):
            base = s * (in_bytes + logit_bytes)
            self.inputs.append(np.frombuffer(self.map, np.int64, rows * T, base).reshape(rows, T))
            self.logits.append(np.frombuffer(self.map, np.float32, rows * T * V, base + in_bytes).reshape(rows, T, V))


def log(message: str) -> None:
    print(f"scorer: {message}", file=sys.stderr, flush=True)
