"""The history an LLM sees after a night: compacted, and still holding what the next idea needs."""

from __future__ import annotations

from autoresearch.agents.base import Context, HistoryEntry
from autoresearch.agents.history import COMPACT_AFTER, changed_constants, compact, idea_key
from autoresearch.agents.prompt import build_prompt, format_history
from autoresearch.vcs import diff_texts

BASE = "DEPTH = 4\nMATRIX_LR = 0.04\nWARMUP = 0.1\n\nprint('train')\n"


def change(**constants) -> str:
    text = BASE
    for k, v in constants.items():
        text = "\n".join(f"{k} = {v}" if line.startswith(f"{k} =") else line for line in text.splitlines()) + "\n"
    return diff_texts(BASE, text)


def night(n: int = 150) -> list[HistoryEntry]:
    """A long run: a few keeps, many discards of the same three ideas, crashes of two causes, one near miss."""
    out, best = [HistoryEntry(1, "keep", "baseline", 1.500)], 1.500
    for i in range(2, n + 1):
        if i % 30 == 0:
            best -= 0.01
            out.append(HistoryEntry(i, "keep", f"kept idea {i}", best, diff=change(DEPTH=4 + i // 30)))
        elif i % 11 == 0:
            cause = "CUDA out of memory" if i % 2 else "shape mismatch in attention"
            out.append(HistoryEntry(i, "crash", f"bigger model {i}", reason=f"{cause} at step 3"))
        elif i == n - 20:
            out.append(HistoryEntry(i, "discard", "warmup 0.05: so close", best + 0.0005, diff=change(WARMUP=0.05)))
        else:
            lr = round(0.02 + 0.001 * (i % 7), 3)
            out.append(HistoryEntry(i, "discard", f"learning rate {lr:.3f}", best + 0.02, diff=change(MATRIX_LR=lr))
                       if i % 3 else HistoryEntry(i, "discard", "try a different optimizer for the head", best + 0.03,
                                                  diff="-x = 1\n+x = opt()\n"))
    return out


def test_a_short_history_is_every_row():
    short = night(COMPACT_AFTER)
    assert compact(short, 0.002, 1.49, format_history) == format_history(short)


def test_a_night_is_compacted_and_keeps_what_matters():
    history = night(150)
    best = min(h.val_bpb for h in history if h.status == "keep")
    text = compact(history, 0.002, best, format_history)
    full = format_history(history, max_rows=10_000)
    assert len(text) < len(full) / 2  # it fits where the full table would not
    for h in history:
        if h.status == "keep":
            assert f"| {h.number} | keep |" in text  # every kept change, in full
    assert "#130 val_bpb" in text and "warmup 0.05: so close" in text and "+WARMUP = 0.05" in text  # the near miss
    lr_tries = sum(1 for h in history if h.status == "discard" and "learning rate" in h.description)
    assert f"- constants MATRIX_LR: {lr_tries}x" in text  # grouped, with the values tried
    group = next(line for line in text.splitlines() if line.startswith("- constants MATRIX_LR"))
    tried = group.split("MATRIX_LR = ", 1)[1].split(", ")
    assert sorted(tried) == [f"{0.02 + 0.001 * k:.3f}".rstrip("0") for k in range(7)]
    assert "- change: try a different optimizer" in text
    ooms = sum(1 for h in history if h.status == "crash" and "memory" in h.reason)
    assert f"crash: CUDA out of memory at step 3: {ooms}x" in text  # failures by cause
    assert f"| {history[-1].number} |" in text  # the latest rows


def test_the_prompt_uses_the_compacted_history():
    history = tuple(night(120))
    best = min(h.val_bpb for h in history if h.status == "keep")
    ctx = Context(program="", train_py=BASE, harness_surface="", history=history, best_val_bpb=best, noise_sd=0.002)
    assert "Near misses" in build_prompt(ctx) and "Discarded ideas, grouped" in build_prompt(ctx)


def test_ideas_are_keyed_by_the_constants_they_touch():
    assert changed_constants(change(MATRIX_LR=0.06, DEPTH=6)) == {"MATRIX_LR": "0.06", "DEPTH": "6"}
    assert changed_constants("-x = 1\n+x = 2\n") == {}  # not CAPS: a code change
    assert idea_key(HistoryEntry(3, "discard", "Use RoPE base 50k!", diff="-y\n+z\n")) == "change: use rope base 50k"
