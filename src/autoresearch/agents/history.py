"""The history an LLM is shown, compacted so that a night of experiments still fits its context and stays useful.

Up to COMPACT_AFTER experiments the prompt shows every one as a table row. Beyond that it shows:
- the kept changes in full (the path to the best file, each with its figure);
- the near misses: discards within the noise of the best they were measured against, with their diffs, since two
  of them may combine into a keep;
- the other discards grouped by idea (the CAPS constants a change touched, or its description's first words),
  each group with how often it was tried and its figures;
- crashes and rejections grouped by cause;
- the most recent few experiments, as rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from autoresearch.agents.base import HistoryEntry

COMPACT_AFTER = 40  # experiments shown one row each before the history is compacted
RECENT_ROWS = 8  # the latest experiments, always as rows
NEAR_MISSES = 8  # at most, the latest ones
NEAR_MISS_DIFF_LINES = 20
CAUSE_CHARS = 100  # of a crash's reason: what groups crashes
CONSTANT_LINE = re.compile(r"^[-+]([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s*(?:#.*)?$")


@dataclass
class _Group:
    key: str
    entries: list[HistoryEntry] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)  # constant -> the values tried


def changed_constants(diff: str) -> dict[str, str]:
    """The CAPS constants a diff sets, with their new values; {} when it changes anything else too."""
    new: dict[str, str] = {}
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@")) or line[:1] not in ("+", "-") or not line[1:].strip():
            continue
        m = CONSTANT_LINE.match(line)
        if m is None:
            return {}
        if line.startswith("+"):
            new[m[1]] = m[2]
    return new


def idea_key(h: HistoryEntry) -> str:
    constants = changed_constants(h.diff)
    if constants:
        return "constants " + ", ".join(sorted(constants))
    words = re.findall(r"[a-z0-9_]+", h.description.lower())[:4]
    return "change: " + " ".join(words) if words else "change: (no description)"


def near_misses(history: Sequence[HistoryEntry], noise_sd: float | None, sign: int = 1) -> list[HistoryEntry]:
    """Discards within one noise sd (0.1% where no noise was measured) of the best they were measured against.
    `sign`: +1 when lower is better, -1 when higher is."""
    out, best_then = [], None
    for h in sorted(history, key=lambda h: h.number):
        if h.status == "discard" and h.val_bpb is not None and best_then is not None:
            if sign * (h.val_bpb - best_then) <= (noise_sd if noise_sd else 0.001 * abs(best_then)):
                out.append(h)
        if h.status == "keep" and h.val_bpb is not None:
            best_then = h.val_bpb if best_then is None else min(best_then, h.val_bpb, key=lambda v: sign * v)
    return out


def compact(history: Sequence[HistoryEntry], noise_sd: float | None, best: float | None, table,
            metric: str = "val_bpb", sign: int = 1) -> str:
    """The history as text; `table` formats rows (prompt.format_history)."""
    rows = list(history)
    if len(rows) <= COMPACT_AFTER:
        return table(rows)
    parts = [f"{len(rows)} experiments so far, compacted: the kept changes, the near misses, the other ideas grouped, "
             "the failures by cause, and the latest rows."]
    kept = [h for h in rows if h.status == "keep"]
    parts += ["", f"Kept changes ({len(kept)}, in order; each became the best):", table(kept)]
    close = near_misses(rows, noise_sd, sign)[-NEAR_MISSES:]
    if close:
        parts += ["", "Near misses (discarded, but within the noise of the best: worth combining):"]
        for h in close:
            parts.append(f"#{h.number} {metric} {h.val_bpb:.6f} {h.description}")
            if h.diff.strip():
                parts.append("```diff\n" + "\n".join(h.diff.splitlines()[:NEAR_MISS_DIFF_LINES]) + "\n```")
    shown = {id(h) for h in close}
    groups: dict[str, _Group] = {}
    for h in rows:
        if h.status == "discard" and id(h) not in shown:
            g = groups.setdefault(idea_key(h), _Group(idea_key(h)))
            g.entries.append(h)
            for name, value in changed_constants(h.diff).items():
                g.values.setdefault(name, []).append(value)
    if groups:
        parts += ["", f"Discarded ideas, grouped (tried, best {metric}, experiments; values tried):"]
        for g in sorted(groups.values(), key=lambda g: -len(g.entries)):
            figures = [h.val_bpb for h in g.entries if h.val_bpb is not None]
            values = "; ".join(f"{k} = {', '.join(dict.fromkeys(v))}" for k, v in sorted(g.values.items()))
            parts.append(f"- {g.key}: {len(g.entries)}x, best {min(figures, key=lambda v: sign * v):.6f}" if figures else
                         f"- {g.key}: {len(g.entries)}x")
            parts[-1] += f", #{', #'.join(str(h.number) for h in g.entries[-6:])}" + (f"; {values}" if values else "")
    failures: dict[str, list[HistoryEntry]] = {}
    for h in rows:
        if h.status in ("crash", "rejected"):
            failures.setdefault(f"{h.status}: {' '.join(h.reason.split())[:CAUSE_CHARS] or 'no reason'}", []).append(h)
    if failures:
        parts += ["", "Failures, by cause (count, experiments, one description):"]
        for cause, hs in sorted(failures.items(), key=lambda kv: -len(kv[1])):
            parts.append(f"- {cause}: {len(hs)}x, #{', #'.join(str(h.number) for h in hs[-6:])} "
                         f"(e.g. {hs[-1].description[:80]})")
    parts += ["", f"The latest {RECENT_ROWS} experiments:", table(rows[-RECENT_ROWS:])]
    return "\n".join(parts)
