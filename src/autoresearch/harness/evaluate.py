"""The fixed metric: bits per byte on the validation split, and on the held-out test split.

The cross-entropy is computed here from the model's logits, never taken from a loss the model returns, and each
target token is weighted by the bytes it stands for, so the figure is comparable across tokenizers. Special tokens
(zero bytes) are not scored. Before any scoring, the causality probe checks the model does not look ahead, and
the harness checks its own objects were not replaced at run time. The result reaches whoever launched the run
through the harness's channel (see channel.py); what train.py prints is for humans only.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from autoresearch.harness import channel, integrity
from autoresearch.harness.probe import check_causality
from autoresearch.harness.tokenizer import Tokenizer

_cross_entropy = F.cross_entropy  # taken at import: a train.py that patches F.cross_entropy changes nothing here
LOGITS_BUDGET = 2**27  # logits elements per forward call: bounds evaluation memory whatever batch_size is


@dataclass
class SplitScore:
    bpb: float
    nats: float
    bytes: int
    tokens: int
    calls: int  # forward calls that scored this split, all of the same shape
    seconds: float  # device time: from a synchronized start to the read of the sums


def rows_per_call(batch_size: int, T: int, vocab: int, n_rows: int) -> int:  # noqa: N803
    """Rows of every scoring call: train.py's batch size (its model has run at that size), at most what one call's
    logits may hold, and no more than the split needs."""
    if batch_size < 1:
        raise ValueError(f"evaluate_bpb: batch_size must be at least 1, got {batch_size}")
    return max(1, min(batch_size, LOGITS_BUDGET // (T * vocab), n_rows))


def score_split(model, token_bytes: torch.Tensor, loader, n_rows: int, rows: int, device,
                probe=None, probe_chunks: frozenset[int] = frozenset({0})) -> SplitScore:
    """Sum the model's cross-entropy (nats) and the target bytes over the first `n_rows` rows of `loader`.

    `loader` yields batches of exactly `rows` rows, and every call of the model gets one whole batch: one shape for
    the whole evaluation, so a model compiled with static shapes compiles once. When `n_rows` is not a multiple of
    `rows`, the last call is padded with the split's next rows, which are computed but not scored (dropping the
    remainder instead would make the figure depend on train.py's batch size; padding with rows of our own making
    would let a model tell them apart). The sums stay on the device and are read once, at the end: the host never
    waits for the device in between, except on the calls the probe checks.

    `probe(model, x, y, logits)` is called after the scoring calls numbered in `probe_chunks`, with that call's
    own logits, so a model cannot tell a probed call from any other before it answers.
    """
    from autoresearch.harness.device import autocast_context, synchronize

    synchronize(device)  # what train.py left queued on the device is not the evaluation's time
    t0 = time.perf_counter()
    V = len(token_bytes)  # noqa: N806
    token_bytes = token_bytes.to(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, bytes, scored tokens: exact in float64
    chunk = 0
    for done in range(0, n_rows, rows):
        x, y, _ = next(loader)  # (rows, T)
        if x.size(0) != rows:
            raise ValueError(f"evaluate_bpb: the evaluation loader gave {x.size(0)} rows, not {rows}")
        with autocast_context(device):
            logits = model(x)  # (rows, T, V')
        if type(logits) is not torch.Tensor or logits.dim() != 3 or logits.shape[:2] != x.shape:
            raise ValueError(
                f"evaluate_bpb: model(x) must return logits of shape (B, T, V) = ({x.size(0)}, {x.size(1)}, V), "
                f"got {getattr(logits, 'shape', type(logits).__name__)}"
            )
        if logits.size(-1) < V:
            raise ValueError(f"evaluate_bpb: logits have {logits.size(-1)} classes, vocabulary has {V}")
        if probe is not None and chunk in probe_chunks:
            probe(model, x, y, logits)
        chunk += 1
        logits = logits[..., :V].float()
        nats = _cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="none")  # (rows*T,)
        nbytes = token_bytes[y]  # (rows, T)
        if n_rows - done < rows:  # the padding rows of the last call count for nothing
            nbytes = nbytes * (torch.arange(rows, device=device) < n_rows - done).unsqueeze(1)
        nbytes = nbytes.reshape(-1)  # (rows*T,)
        scored = nbytes > 0  # special tokens (no bytes) are not scored
        sums += torch.stack(((nats.double() * scored).sum(), nbytes.sum().double(), scored.sum().double()))
    nats_f, bytes_f, tokens_f = sums.tolist()  # the one host read of the split
    bpb = nats_f / (math.log(2) * bytes_f) if bytes_f else float("nan")
    return SplitScore(bpb=bpb, nats=nats_f, bytes=int(bytes_f), tokens=int(tokens_f), calls=chunk,
                      seconds=time.perf_counter() - t0)


class RefusedToScore(Exception):
    """The run broke a rule the metric depends on; it gets no score."""


@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size: int, splits: tuple[str, ...] = ("val", "test")) -> float:
    """Official val_bpb of `model` (lower is better). Also scores the held-out test split when the launcher asks
    for it (whoever launched the run decides, after seeing val_bpb; by hand, it is always scored).

    Raises RefusedToScore (after telling the launcher why) if the model looks ahead or the harness was tampered with.
    """
    from autoresearch.harness.constants import eval_rows, workspace_settings
    from autoresearch.harness.dataloader import evaluation_loader, exact_count
    from autoresearch.harness.device import get_device, peak_memory_mb, synchronize
    from autoresearch.harness.meter import meter

    batch_size = exact_count("evaluate_bpb: batch_size", batch_size)  # a float or int subclass could bend the stride
    if channel.sent("eval_start"):  # time after a first evaluation is not training time: no second chance
        _refuse("evaluated_twice", "evaluate_bpb was called a second time: train, then evaluate once, at the end")
    channel.send("eval_start", once=True, **meter.totals())
    tampered = integrity.changed()
    if tampered:
        _refuse("tampered", f"harness objects were replaced at run time: {', '.join(tampered)}")
    if torch._C._len_torch_function_stack() or torch._C._len_torch_dispatch_stack():
        _refuse("tampered", "a torch function or dispatch mode is active during evaluation: it could rewrite what "
                            "the metric computes")
    T = workspace_settings().max_seq_len  # noqa: N806
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = get_device()
    own = Tokenizer.load()  # the byte lengths come from the prepared data, not from what train.py hands us
    token_bytes = torch.from_numpy(own.token_bytes).long()
    vocab = own.get_vocab_size()
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    weights = _fingerprint(model)  # the model must leave the evaluation exactly as it came in
    synchronize(device)
    t0 = time.perf_counter()
    scores: dict[str, SplitScore] = {}
    probe_result = None

    first: list = []

    def probe(m, x, y, logits):
        nonlocal probe_result
        result = check_causality(m, x, vocab, base=logits, seed=int.from_bytes(os.urandom(4), "little"))
        if probe_result is None or result.max_diff > probe_result.max_diff:
            probe_result = result
        if not result.causal:
            _refuse("non_causal", result.detail, probe=result.to_dict())
        if not first:  # the first call's own loss: the reference of the re-score below
            first.extend([x, y, _nats(logits, y, vocab)])

    # One call shape for every split, the probe's calls and the re-score included (see score_split).
    n_rows = {split: eval_rows(split) for split in splits}
    rows = rows_per_call(batch_size, T, vocab, max(n_rows.values()))
    # Which scoring calls get probed: the first and the last (a model honest for its first calls only is caught),
    # and two more drawn from the OS, unknown to train.py. A probe costs one call of the scoring shape.
    n_chunks = math.ceil(n_rows["val"] / rows)
    draw = random.Random(os.urandom(16))
    probe_chunks = frozenset({0, n_chunks - 1, *(draw.randrange(n_chunks) for _ in range(2))})

    try:
        for split in splits:
            if split == "test" and "val" in scores and not _launcher_wants_test(scores["val"].bpb):
                continue
            loader = evaluation_loader(tokenizer, rows, T, split, device)
            scores[split] = score_split(model, token_bytes, loader, n_rows[split], rows, device,
                                        probe=probe if split == "val" else None, probe_chunks=probe_chunks)
        # A model must not learn from what it is evaluated on: the first chunk, scored again, scores the same.
        x, y, before = first
        after = _chunk_nats(model, x, y, vocab, device)
        if abs(after - before) > 1e-3 * max(1.0, abs(before)):
            _refuse("stateful", f"the model's loss on the first evaluation batch moved from {before:.6g} to "
                                f"{after:.6g} during the evaluation: it learns from the validation data")
        if weights is not None and not torch.equal(weights, _fingerprint(model)):
            _refuse("stateful", "the model's parameters or buffers changed during the evaluation: training ends "
                                "before evaluate_bpb, which scores the model as it is")
    finally:
        if was_training:
            model.train()
    synchronize(device)
    payload = {f"{k}_{field}": v for k, s in scores.items() for field, v in asdict(s).items()}
    payload["splits"] = list(scores)
    payload["rows_per_call"] = rows
    payload["eval_seconds"] = time.perf_counter() - t0  # device time: synchronized at both ends
    payload["peak_memory_mb"] = peak_memory_mb(device)  # measured here, not taken from what train.py prints
    payload["device"] = _device_name(device)
    payload["probe"] = probe_result.to_dict() if probe_result else None
    settings = workspace_settings()
    payload["settings"] = {k: getattr(settings, k) for k in ("dataset", "max_seq_len", "eval_tokens", "vocab_size",
                                                             "time_budget", "token_budget", "seed")}
    channel.send("result", **payload)
    return scores["val"].bpb


def _launcher_wants_test(val_bpb: float) -> bool:
    """Ask whoever launched the run whether the held-out test split is worth scoring for this val_bpb. The runner
    records its answer and rejects a run that skips a test split it asked for; with no runner, score it."""
    answer = channel.ask("ask_test", val_bpb=val_bpb)
    return answer is None or answer.get("test") is not False


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


def _chunk_nats(model, x, y, vocab: int, device) -> float:
    from autoresearch.harness.device import autocast_context

    with autocast_context(device):
        logits = model(x)
    if type(logits) is not torch.Tensor or logits.dim() != 3:
        return float("nan")  # score_split reports the malformed output
    return _nats(logits, y, vocab)


def _nats(logits: torch.Tensor, y: torch.Tensor, vocab: int) -> float:
    """Summed cross-entropy of (B, T, V') logits against (B, T) targets, as the scoring computes it."""
    logits = logits[..., :vocab].float()
    return float(_cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"))


def _refuse(kind: str, reason: str, **data) -> None:
    channel.send("violation", kind=kind, reason=reason, **data)
    raise RefusedToScore(reason)
