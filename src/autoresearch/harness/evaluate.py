"""evaluate_bpb: train.py's side of the evaluation. The figures are computed by the scorer, another process.

train.py's process cannot read the validation and test splits; the scorer (run/scorer.py) alone holds them. This
client hands the model the input batches the scorer streams, and hands back its logits through shared memory
(harness/wire.py): device memory through CUDA IPC on a GPU, so they are never copied to the host there. The
scorer computes bits per byte, places probe rows that catch a model that looks ahead or changes while it is
evaluated, and reports the figures to the runner on a pipe only it holds. What this function returns is the val
figure the scorer computed; what train.py prints is for humans.

Run by hand (no runner), the client starts a scorer of its own, which then tells it the whole result.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from autoresearch.harness import channel, wire


class RefusedToScore(Exception):
    """The run broke a rule the metric depends on; it gets no score."""


def _from_environment() -> int | None:
    value = os.environ.pop(wire.SCORER_ENV, None)  # taken at import: train.py does not find it in os.environ
    try:
        return int(value) if value else None
    except ValueError:
        return None


_scorer_fd = _from_environment()


@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size: int) -> float:
    """Official val_bpb of `model` (lower is better): model(x) must return logits (B, T, V) for inputs (B, T).

    The scorer also scores the held-out test split when the runner wants it. Call it once, after training.
    Raises RefusedToScore if the scorer refuses the model (it looks ahead, or changes while evaluated).
    """
    return float(score(model, batch_size)["val_bpb"])


def score(model, batch_size: int) -> dict:
    """The scorer's last message: {"val_bpb": ...}, plus "result" (every figure) when run by hand."""
    from autoresearch.harness.dataloader import exact_count
    from autoresearch.harness.device import get_device, peak_memory_mb
    from autoresearch.harness.meter import meter

    batch_size = exact_count("evaluate_bpb: batch_size", batch_size)  # a float or int subclass could bend the stride
    if channel.sent("eval_start"):  # time after a first evaluation is not training time: no second chance
        _refuse("evaluated_twice", "evaluate_bpb was called a second time: train, then evaluate once, at the end")
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        device = get_device()
    # The memory figure the records keep is the last one sent before the test split is served (the runner's rule):
    # this one, before any evaluation row, when the test split is scored.
    channel.send("eval_start", once=True, peak_memory_mb=peak_memory_mb(device), **meter.totals())
    sock, own = _connect()
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    weights = _fingerprint(model)  # early feedback only: the scorer's probes are what count
    try:
        wire.send(sock, "hello", batch_size=batch_size, device=str(device))
        slots = _open_slots(sock, device)
        end = _serve(sock, slots, model, device)
    except wire.WireError as e:
        raise RuntimeError(f"evaluate_bpb: the scorer went away ({e}); see scorer.log in the run's directory") from None
    finally:
        sock.close()
        if was_training:
            model.train()
        if own is not None:
            own.wait(timeout=60)
    channel.send("eval_done", peak_memory_mb=peak_memory_mb(device), device=_device_name(device))
    if end["op"] == "refused":
        _refuse("scorer", str(end.get("reason", "the scorer refused to score this model")))
    if weights is not None and not torch.equal(weights, _fingerprint(model)):
        _refuse("stateful", "the model's parameters or buffers changed during the evaluation: training ends before "
                            "evaluate_bpb, which scores the model as it is")
    return end


def _connect():
    """(socket to the scorer, the scorer process when this client had to start it)."""
    import socket

    global _scorer_fd
    if _scorer_fd is not None:
        fd, _scorer_fd = _scorer_fd, None  # one evaluation per connection
        return socket.socket(fileno=fd), None
    mine, theirs = socket.socketpair()
    env = dict(os.environ)
    from autoresearch.harness import constants

    if constants._launcher_settings:
        env[constants.SETTINGS_ENV] = constants._launcher_settings
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch.run.scorer", "--socket-fd", str(theirs.fileno()),
                             "--reveal"], pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
    theirs.close()
    return mine, proc


class _Slots:
    """This side's view of the shared buffers: inputs(slot) -> x on the model's device; put(slot, logits)."""

    def __init__(self, layout: dict, device, fd: int | None) -> None:
        self.rows, self.T, self.V = int(layout["rows"]), int(layout["T"]), int(layout["V"])
        self.kind = layout["transport"]
        self.device = device
        if self.kind == "cuda-ipc":
            from autoresearch.harness import cuda_ipc

            in_bytes, logit_bytes, _ = wire.slot_layout(self.rows, self.T, self.V)
            ptr = cuda_ipc.open_handle(bytes.fromhex(layout["cuda"]["handle"]), device)
            self._inputs = [cuda_ipc.tensor(ptr, s * (in_bytes + logit_bytes), (self.rows, self.T), "int64", device)
                            for s in range(wire.SLOTS)]
            self._logits = [cuda_ipc.tensor(ptr, s * (in_bytes + logit_bytes) + in_bytes,
                                            (self.rows, self.T, self.V), "float32", device) for s in range(wire.SLOTS)]
        else:
            shared = wire.SharedSlots(fd, self.rows, self.T, self.V)
            self._inputs = [torch.from_numpy(a) for a in shared.inputs]
            self._logits = [torch.from_numpy(a) for a in shared.logits]

    def inputs(self, slot: int) -> torch.Tensor:
        return self._inputs[slot].to(self.device, copy=True)  # (rows, T): our own copy, whatever the scorer does next

    def put(self, slot: int, logits: torch.Tensor) -> None:
        self._logits[slot].copy_(logits[..., : self.V])
        if self.kind == "cuda-ipc":
            torch.cuda.synchronize(self.device)  # in device memory before the scorer is told


def _open_slots(sock, device) -> _Slots:
    """Take the scorer's layouts until one opens here: CUDA IPC first on a GPU, shared host memory otherwise."""
    while True:
        fds: list[int] = []
        layout = wire.receive(sock, fds)
        if layout["op"] != "layout":
            raise wire.WireError(f"expected a layout, got {layout['op']}")
        if layout.get("transport") == "none":
            continue  # the scorer could not share device memory: a host layout follows
        try:
            slots = _Slots(layout, device, fds[0] if fds else None)
        except Exception as e:  # noqa: BLE001 - say why to the scorer, which falls back to host memory
            if layout.get("transport") != "cuda-ipc":
                raise
            wire.send(sock, "ready", transport="none", reason=f"{type(e).__name__}: {e}"[:300])
            continue
        finally:
            for fd in fds:
                os.close(fd)  # the mapping, if any, holds the memory
        wire.send(sock, "ready", transport=slots.kind)
        return slots


def _serve(sock, slots: _Slots, model, device) -> dict:
    from autoresearch.harness.device import autocast_context

    while True:
        message = wire.receive(sock)
        if message["op"] in ("end", "refused"):
            return message
        if message["op"] != "batch":
            raise wire.WireError(f"unexpected message {message['op']}")
        slot, seq = int(message["slot"]) % wire.SLOTS, message["seq"]
        x = slots.inputs(slot)  # (rows, T)
        try:
            with autocast_context(device):
                logits = model(x)  # (rows, T, V')
            if type(logits) is not torch.Tensor or logits.dim() != 3 or logits.shape[:2] != x.shape:
                raise ValueError(
                    f"evaluate_bpb: model(x) must return logits of shape (B, T, V) = ({x.size(0)}, {x.size(1)}, V), "
                    f"got {getattr(logits, 'shape', type(logits).__name__)}")
            if logits.size(-1) < slots.V:
                raise ValueError(f"evaluate_bpb: logits have {logits.size(-1)} classes, vocabulary has {slots.V}")
            slots.put(slot, logits)
        except Exception as e:
            wire.send(sock, "error", message=f"{type(e).__name__}: {e}")
            raise
        try:
            wire.send(sock, "done", slot=slot, seq=seq)
        except wire.WireError:  # the scorer has finished with us (a refusal): its last word is still to be read
            return _last_word(sock)


def _last_word(sock) -> dict:
    while True:
        message = wire.receive(sock)
        if message["op"] in ("end", "refused"):
            return message


def _fingerprint(model) -> torch.Tensor | None:
    """One float64 sum per parameter and buffer, on their device (no host sync here): any update changes them."""
    if not isinstance(model, torch.nn.Module):
        return None
    tensors = [*model.parameters(), *model.buffers()]
    if not tensors:
        return None
    return torch.stack([t.detach().sum(dtype=torch.float64).to(tensors[0].device) for t in tensors])  # (n,)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _refuse(kind: str, reason: str) -> None:
    channel.send("violation", kind=kind, reason=reason)
    raise RefusedToScore(reason)
