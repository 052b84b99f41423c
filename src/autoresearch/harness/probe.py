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
    """Perturb the future of `x` (B, T) at several cut points and compare the model's past logits.

    `base`: the logits the model already gave for `x` (the evaluation passes its scoring call's own output, so the
    reference is an ordinary call the model could not single out).
    """
    from autoresearch.harness.device import autocast_context

    T = x.size(1)
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
    for t in sorted(cuts):
        if not 0 <= t < T - 1:
            continue
        changed = x.clone()
        future = torch.randint(0, vocab_size, (x.size(0), T - t - 1), generator=g).to(x.device)
        changed[:, t + 1 :] = torch.where(future == x[:, t + 1 :], (future + 1) % vocab_size, future)
        with autocast_context(x.device):
            out = model(changed).float()
        diff = float((out[:, : t + 1] - base[:, : t + 1]).abs().max())
        if diff > worst.max_diff:
            worst = ProbeResult(diff <= tolerance, diff, t, "")
    if not worst.causal:
        worst.detail = (f"changing tokens after position {worst.position} changed the logits at or before it by "
                        f"{worst.max_diff:.3g} (tolerance {tolerance:.3g}): the model looks ahead")
    elif not worst.detail:
        worst.detail = f"largest change of past logits {worst.max_diff:.3g} <= tolerance {tolerance:.3g}"
    return worst
