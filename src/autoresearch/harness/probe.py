"""Causality probe: a language model's output at position t may depend on tokens <= t only.

Changing the tokens after position t must leave the logits at and before t unchanged (within numerical
tolerance). A model that looks ahead (a broken mask, attention over the whole row, a convolution that reaches
forward) reaches a val_bpb no honest model can, so the harness refuses to score it at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

RELATIVE_TOLERANCE = 1e-3  # of the logits' magnitude: far above bf16 noise of identical computations


@dataclass
class ProbeResult:
    causal: bool
    max_diff: float
    position: int
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def check_causality(model, x: torch.Tensor, vocab_size: int, seed: int = 1234,
                    base: torch.Tensor | None = None) -> ProbeResult:
    """Perturb the future of `x` (B, T) after several cut points and compare the model's past logits.

    `base`: the logits the model already gave for `x` (the evaluation passes its scoring call's own output, so the
    reference is an ordinary call the model could not single out).

    Each row gets its own cut point (the cuts taken in turn over the rows), so one call of the same shape as the
    scoring calls checks them all when the batch has at least as many rows as there are cuts; smaller batches take
    more calls, every row being perturbed in each. Rows never look at each other in a language model, so a row's
    logits up to its cut must not move, whatever the other rows' cuts are.
    """
    from autoresearch.harness.device import autocast_context

    B, T = x.shape  # noqa: N806
    g = torch.Generator(device="cpu").manual_seed(seed)
    if base is None:
        with autocast_context(x.device):
            base = model(x)  # (B, T, V)
    if not torch.is_tensor(base) or base.dim() != 3 or base.shape[:2] != x.shape:
        return ProbeResult(True, 0.0, -1, "skipped: the output is not logits of shape (B, T, V)")  # scoring says why
    base = base.float()
    scale = float(base.abs().max()) if base.numel() else 0.0
    tolerance = RELATIVE_TOLERANCE * max(1.0, scale)
    worst = ProbeResult(True, 0.0, -1, "outputs at each position depend only on earlier tokens")
    cuts = {T // 4, T // 2, (3 * T) // 4, T - 2, int(torch.randint(1, max(2, T - 1), (1,), generator=g))}
    cuts = sorted(t for t in cuts if 0 <= t < T - 1)
    if not cuts:
        return worst
    positions = torch.arange(T, device=x.device)  # (T,)
    for first in range(0, max(len(cuts), B), B):
        row_cut = torch.tensor([cuts[(first + i) % len(cuts)] for i in range(B)], device=x.device)  # (B,)
        future = positions.unsqueeze(0) > row_cut.unsqueeze(1)  # (B, T): after each row's cut
        noise = torch.randint(0, vocab_size, (B, T), generator=g).to(x.device)  # (B, T)
        noise = torch.where(noise == x, (noise + 1) % vocab_size, noise)  # every future token really changes
        changed = torch.where(future, noise, x)  # (B, T)
        with autocast_context(x.device):
            out = model(changed)
        moved = (out.float() - base).abs().amax(-1).masked_fill(future, 0.0)  # (B, T): change at or before the cut
        per_row = moved.amax(-1)  # (B,)
        row = int(per_row.argmax())
        diff = float(per_row[row])
        if diff > worst.max_diff:
            worst = ProbeResult(diff <= tolerance, diff, int(row_cut[row]), "")
    if not worst.causal:
        worst.detail = (f"changing tokens after position {worst.position} changed the logits at or before it by "
                        f"{worst.max_diff:.3g} (tolerance {tolerance:.3g}): the model looks ahead")
    elif not worst.detail:
        worst.detail = f"largest change of past logits {worst.max_diff:.3g} <= tolerance {tolerance:.3g}"
    return worst
