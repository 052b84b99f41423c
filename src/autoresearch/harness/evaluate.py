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


def score_split(model, token_bytes: torch.Tensor, loader, n_rows: int, batch_size: int, device,
                probe=None, probe_chunks: frozenset[int] = frozenset({0})) -> SplitScore:
    """Sum the model's cross-entropy (nats) and the target bytes over the first `n_rows` rows of `loader`.

    `probe(model, x, y, logits)` is called after the scoring calls numbered in `probe_chunks`, with that call's
    own logits, so a model cannot tell a probed call from any other before it answers.
    """
    from autoresearch.harness.device import autocast_context

    if batch_size < 1:
        raise ValueError(f"evaluate_bpb: batch_size must be at least 1, got {batch_size}")
    chunk = 0
    token_bytes = token_bytes.to(device)
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    tokens = 0
    done = 0
    while done < n_rows:
        x, y, _ = next(loader)  # (B, T)
        take = min(batch_size, n_rows - done)
        x, y = x[:take], y[:take]
        T = x.size(1)
        per_call = max(1, min(take, LOGITS_BUDGET // (T * len(token_bytes))))
        for i in range(0, take, per_call):
            xi, yi = x[i : i + per_call], y[i : i + per_call]
            with autocast_context(device):
                logits = model(xi)
            if type(logits) is not torch.Tensor or logits.dim() != 3 or logits.shape[:2] != xi.shape:
                raise ValueError(
                    f"evaluate_bpb: model(x) must return logits of shape (B, T, V) = ({xi.size(0)}, {T}, V), "
                    f"got {getattr(logits, 'shape', type(logits).__name__)}"
                )
            if logits.size(-1) < len(token_bytes):
                raise ValueError(f"evaluate_bpb: logits have {logits.size(-1)} classes, vocabulary has {len(token_bytes)}")
            if probe is not None and chunk in probe_chunks:
                probe(model, xi, yi, logits)
            chunk += 1
            logits = logits[..., : len(token_bytes)].float()
            nats = _cross_entropy(logits.reshape(-1, logits.size(-1)), yi.reshape(-1), reduction="none")  # (b*T,)
            nbytes = token_bytes[yi.reshape(-1)]  # (b*T,)
            total_nats += (nats.double() * (nbytes > 0)).sum()
            total_bytes += nbytes.sum()
            tokens += int((nbytes > 0).sum())
        done += take
    nats_f, bytes_i = float(total_nats), int(total_bytes)
    bpb = nats_f / (math.log(2) * bytes_i) if bytes_i else float("nan")
    return SplitScore(bpb=bpb, nats=nats_f, bytes=bytes_i, tokens=tokens)


class RefusedToScore(Exception):
    """The run broke a rule the metric depends on; it gets no score."""


@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size: int, splits: tuple[str, ...] = ("val", "test")) -> float:
    """Official val_bpb of `model` (lower is better). Also scores the held-out test split for the launcher.

    Raises RefusedToScore (after telling the launcher why) if the model looks ahead or the harness was tampered with.
    """
    from autoresearch.harness.constants import eval_rows, workspace_settings
    from autoresearch.harness.dataloader import evaluation_loader
    from autoresearch.harness.device import get_device
    from autoresearch.harness.meter import meter

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
        if not first:
            first.extend([x, y, _chunk_nats(m, x, y, vocab, device)])

    # Which scoring calls get probed is drawn from the OS, unknown to train.py: the first, and two more at random.
    n_chunks = max(1, math.ceil(eval_rows("val") / max(1, min(batch_size, LOGITS_BUDGET // (T * vocab)))))
    draw = random.Random(os.urandom(16))
    probe_chunks = frozenset({0, *(draw.randrange(n_chunks) for _ in range(2))})

    try:
        for split in splits:
            loader = evaluation_loader(tokenizer, batch_size, T, split, device)
            scores[split] = score_split(model, token_bytes, loader, eval_rows(split), batch_size, device,
                                        probe=probe if split == "val" else None, probe_chunks=probe_chunks)
        # A model must not learn from what it is evaluated on: the first chunk, scored again, scores the same.
        x, y, before = first
        after = _chunk_nats(model, x, y, vocab, device)
        if abs(after - before) > 1e-3 * max(1.0, abs(before)):
            _refuse("stateful", f"the model's loss on the first evaluation batch moved from {before:.6g} to "
                                f"{after:.6g} during the evaluation: it learns from the validation data")
    finally:
        if was_training:
            model.train()
    payload = {f"{k}_{field}": v for k, s in scores.items() for field, v in asdict(s).items()}
    payload["eval_seconds"] = time.perf_counter() - t0
    payload["probe"] = probe_result.to_dict() if probe_result else None
    settings = workspace_settings()
    payload["settings"] = {k: getattr(settings, k) for k in ("dataset", "max_seq_len", "eval_tokens", "vocab_size",
                                                             "time_budget", "token_budget", "seed")}
    channel.send("result", **payload)
    return scores["val"].bpb


def _chunk_nats(model, x, y, vocab: int, device) -> float:
    from autoresearch.harness.device import autocast_context

    with autocast_context(device):
        logits = model(x)
    if type(logits) is not torch.Tensor or logits.dim() != 3:
        return float("nan")  # score_split reports the malformed output
    logits = logits[..., :vocab].float()
    return float(_cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"))


def _refuse(kind: str, reason: str, **data) -> None:
    channel.send("violation", kind=kind, reason=reason, **data)
    raise RefusedToScore(reason)
