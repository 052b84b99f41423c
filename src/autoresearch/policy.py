"""Keep or discard: the rule that turns a measured val_bpb into a decision, with the evidence for it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decision:
    keep: bool
    evidence: dict = field(default_factory=dict)  # recorded in the journal with the decision


class GreedyPolicy:
    """The original's rule: keep any improvement on the best val_bpb so far, however small."""

    name = "greedy"

    def decide(self, val_bpb: float, best_val_bpb: float | None) -> Decision:
        if best_val_bpb is None:
            return Decision(True, {"rule": "greedy", "why": "first result (the baseline)"})
        gain = best_val_bpb - val_bpb
        return Decision(gain > 0, {"rule": "greedy", "best": best_val_bpb, "val_bpb": val_bpb, "gain": gain})


POLICIES = {"greedy": GreedyPolicy}


def make_policy(name: str):
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}")
    return POLICIES[name]()
