"""The fixed metric: bits per byte on the validation split, and on the held-out test split.

The cross-entropy is computed here from the model's logits, never taken from a loss the model returns, and each
target token is weighted by the bytes it stands for, so the figure is comparable across tokenizers. Special tokens
(zero bytes) are not scored. The result reaches whoever launched the run through a file whose path the launcher
chose ($AUTORESEARCH_RESULT_FILE); what train.py prints is for humans only.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

RESULT_ENV = "AUTORESEARCH_RESULT_FILE"
LOGITS_BUDGET = 2**27  # logits elements per forward call: bounds evaluation memory whatever batch_size is


@dataclass
class SplitScore:
    bpb: float
    nats: float
    bytes: int
    tokens: int


def score_split(model, token_bytes: torch.Tensor, loader, n_rows: int, batch_size: int, device) -> SplitScore:
    """Sum the model's cross-entropy (nats) and the target bytes over the first `n_rows` rows of `loader`."""
    from autoresearch.harness.device import autocast_context

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
            if not torch.is_tensor(logits) or logits.dim() != 3 or logits.shape[:2] != xi.shape:
                raise ValueError(
                    f"evaluate_bpb: model(x) must return logits of shape (B, T, V) = ({xi.size(0)}, {T}, V), "
                    f"got {getattr(logits, 'shape', type(logits).__name__)}"
                )
            if logits.size(-1) < len(token_bytes):
                raise ValueError(f"evaluate_bpb: logits have {logits.size(-1)} classes, vocabulary has {len(token_bytes)}")
            logits = logits[..., : len(token_bytes)].float()
            nats = F.cross_entropy(logits.reshape(-1, logits.size(-1)), yi.reshape(-1), reduction="none")  # (b*T,)
            nbytes = token_bytes[yi.reshape(-1)]  # (b*T,)
            total_nats += (nats.double() * (nbytes > 0)).sum()
            total_bytes += nbytes.sum()
            tokens += int((nbytes > 0).sum())
        done += take
    nats_f, bytes_i = float(total_nats), int(total_bytes)
    bpb = nats_f / (math.log(2) * bytes_i) if bytes_i else float("nan")
    return SplitScore(bpb=bpb, nats=nats_f, bytes=bytes_i, tokens=tokens)


@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size: int, splits: tuple[str, ...] = ("val", "test")) -> float:
    """Official val_bpb of `model` (lower is better). Also scores the held-out test split for the launcher."""
    from autoresearch.harness.constants import eval_rows, workspace_settings
    from autoresearch.harness.dataloader import make_dataloader
    from autoresearch.harness.device import get_device

    T = workspace_settings().max_seq_len
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = get_device()
    token_bytes = torch.from_numpy(tokenizer.token_bytes).long()
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    t0 = time.perf_counter()
    scores: dict[str, SplitScore] = {}
    try:
        for split in splits:
            loader = make_dataloader(tokenizer, batch_size, T, split, device=device)
            scores[split] = score_split(model, token_bytes, loader, eval_rows(split), batch_size, device)
    finally:
        if was_training:
            model.train()
    _hand_over(scores, time.perf_counter() - t0)
    return scores["val"].bpb


def _hand_over(scores: dict[str, SplitScore], seconds: float) -> None:
    """Write the result where the launcher asked for it (atomically, so a reader never sees half a file)."""
    path = os.environ.get(RESULT_ENV)
    if not path:
        return
    payload = {f"{k}_{field}": v for k, s in scores.items() for field, v in asdict(s).items()}
    payload["eval_seconds"] = seconds
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(target)
