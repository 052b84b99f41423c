"""The hybrid agent: an LLM (or a coding-agent CLI) proposes structural changes, the search agent tunes numbers.

`--agent anthropic:MODEL+search` (any agent, `+`, the tuner). After each structural change that is kept, the
tuner spends `tune_steps` experiments on the CAPS constants of the new best; then the LLM proposes again, and its
prompt says what the tuner learned: which constants it moved, what each was worth. A study of this very task
found this split (the LLM for code, a numeric optimiser for the constants) beat either alone.

Which part proposed each experiment is in the journal's agent column (`anthropic:MODEL` or `search`), so the
history tells the phases apart, and --resume picks up where the run was.
"""

from __future__ import annotations

from dataclasses import replace

from autoresearch.agents.base import Agent, Context, HistoryEntry, Proposal
from autoresearch.agents.history import changed_constants

TUNE_STEPS = 3  # tuner experiments after each kept structural change


class HybridAgent:
    def __init__(self, structural: Agent, tuner: Agent, tune_steps: int = TUNE_STEPS) -> None:
        self.structural, self.tuner, self.tune_steps = structural, tuner, tune_steps
        self.name = f"{structural.name}+{tuner.name}"
        self.can_fix = getattr(structural, "can_fix", True)  # the loop asks for fixes of the LLM's crashes only
        self.check = getattr(structural, "check", None)

    def parts(self) -> tuple[str, str]:
        return self.structural.name, self.tuner.name

    def propose(self, ctx: Context) -> Proposal:
        if ctx.failure is None and self.tuning(ctx.history):
            return replace(self.tuner.propose(ctx), by=self.tuner.name)
        notes = findings(ctx.history, self.tuner.name)
        return replace(self.structural.propose(replace(ctx, notes=notes) if notes else ctx), by=self.structural.name)

    def tuning(self, history: tuple[HistoryEntry, ...]) -> bool:
        """Whether the tuner's turn: the last kept change was structural, and the tuner has had fewer than
        tune_steps experiments since."""
        ordered = sorted(history, key=lambda h: h.number)
        mine = [h.number for h in ordered if h.status == "keep" and h.agent == self.structural.name]
        last_structural_keep = max(mine, default=None)
        if last_structural_keep is None:
            return False
        since = [h for h in ordered if h.number > last_structural_keep and h.agent == self.tuner.name]
        return len(since) < self.tune_steps


def findings(history: tuple[HistoryEntry, ...], tuner: str) -> str:
    """What the tuner learned, for the LLM: per constant it moved, how often, the best value and what it gained
    against the best of its moment (negative val_bpb: better)."""
    best_then: float | None = None
    per: dict[str, list[tuple[str, float | None, float | None]]] = {}
    for h in sorted(history, key=lambda h: h.number):
        if h.agent == tuner:
            for name, value in changed_constants(h.diff).items():
                gain = h.val_bpb - best_then if h.val_bpb is not None and best_then is not None else None
                per.setdefault(name, []).append((value, h.val_bpb, gain))
        if h.status == "keep" and h.val_bpb is not None:
            best_then = h.val_bpb if best_then is None else min(best_then, h.val_bpb)
    if not per:
        return ""
    lines = ["The tuner (a numeric search over the CAPS constants) tried these after your kept changes; change the "
             "code, not these numbers, unless you have a structural reason:"]
    for name, tries in sorted(per.items(), key=lambda kv: min((g for _, _, g in kv[1] if g is not None),
                                                               default=0.0)):
        measured = [(v, g) for v, _, g in tries if g is not None]
        best = min(measured, key=lambda t: t[1]) if measured else None
        lines.append(f"- {name}: {len(tries)} tries" + (f", best {best[0]} ({best[1]:+.4f} val_bpb vs the best then)"
                                                        if best else ", all failed"))
    return "\n".join(lines)
