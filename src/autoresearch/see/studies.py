"""What `ablate` and `transfer` found, read back from the journal, and put into words for the terminal.

The report and the command's own output say the same, since both read the findings the study recorded.
"""

from __future__ import annotations

from autoresearch.loop.ablate import Ablation, Change
from autoresearch.loop.journal import Journal
from autoresearch.loop.measure import SIGMAS, Stats
from autoresearch.loop.transfer import Transfer

WORTH_NOTE = (f"worth: mean bpb without the change minus the best's (positive: it helps). Within the margin "
              f"({SIGMAS:g} standard errors of the difference, from the run's noise floor or the seeds' spread, the "
              "larger), it is worth nothing.")
VERDICT_NOTES = {
    "holds": "the best still beats the baseline at this setting, by more than the noise",
    "shrinks": "the gain is within the noise at this setting: it does not carry over",
    "reverses": "the baseline beats the best at this setting, by more than the noise",
    "failed": "a side has no figure: every run of it failed (see the run directories)",
}


def read_studies(journal: Journal, tag: str) -> tuple[Ablation | None, list[Transfer]]:
    """The run's latest finished ablation, and its finished transfers, oldest first."""
    done = [s for s in journal.studies(tag) if s.state == "done" and s.findings]
    ablations = [Ablation.from_dict(s.findings) for s in done if s.kind == "ablate"]
    transfers = [Transfer.from_dict(s.findings) for s in done if s.kind == "transfer"]
    return (ablations[-1] if ablations else None), transfers


def ablation_lines(a: Ablation, descriptions: int = 40) -> list[str]:
    lines = [f"ablation of run {a.tag}: best #{a.best_number} ({_figures(a.best, a.seeds)}), "
             f"{a.seeds} seed(s) per variant"]
    lines.append(f"{'change':<{descriptions + 6}} {'worth (test)':>13} {'worth (val)':>12} {'margin':>10}  verdict")
    for c in a.changes:
        name = f"#{c.number} {c.description}"
        name = name if len(name) <= descriptions + 5 else name[:descriptions + 4] + "…"
        w = c.worth
        lines.append(f"{name:<{descriptions + 6}} {_signed(w.test if w else None):>13} "
                     f"{_signed(w.val if w else None):>12} {_margin(w):>10}  {c.verdict}")
        if c.note:
            lines.append(f"{'':<8}{c.note}")
    lines.append(WORTH_NOTE)
    if a.seeds == 1 and a.noise_floor is None:
        lines.append("With one seed each and no noise floor in the run, no noise was measured: any difference "
                     "counts. Give --seeds 2 or more.")
    return lines


def transfer_lines(t: Transfer) -> list[str]:
    setting = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in t.overrides.items())
    lines = [f"transfer of run {t.tag} at {setting}: baseline (#1) and best (#{t.best_number}), {t.seeds} seed(s) "
             f"each, {t.budget} per run",
             f"{'':<9} {'val_bpb':>22} {'test_bpb':>22}"]
    for name, s in (("baseline", t.baseline), ("best", t.best)):
        lines.append(f"{name:<9} {_mean(s.vals):>22} {_mean(s.tests):>22}" + (f"  ({len(s.failed)} failed)"
                                                                               if s.failed else ""))
    g = t.gain
    if g is not None:
        lines.append(f"{'gain':<9} {_signed(g.val) + ' ± ' + format(g.margin_val, '.6f'):>22} "
                     f"{_signed(g.test) + ' ± ' + format(g.margin_test, '.6f'):>22}")
        if t.noise:
            lines.append(f"the margin (±) is {SIGMAS:g} standard errors of the gain; noise: {t.noise}")
    original = t.original.get("test") if t.original.get("test") is not None else t.original.get("val")
    if original is not None:
        kept = f" ({g.decisive / original:.0%} of it)" if g and g.decisive is not None and original > 0 else ""
        lines.append(f"the run's own gain, at its setting: {_signed(original)}{kept}")
    lines.append(f"verdict: {t.verdict}: {VERDICT_NOTES[t.verdict]}")
    return lines


def worth_text(c: Change) -> str:
    """One line for a kept change in the report."""
    if c.worth is None:
        return c.verdict + (f" ({c.note})" if c.note else "")
    return (f"worth {_signed(c.worth.test)} test_bpb, {_signed(c.worth.val)} val_bpb (margin {_margin(c.worth)}): "
            f"{c.verdict}")


def _figures(s: Stats | None, seeds: int) -> str:
    if s is None or not s.vals:
        return "not measured"
    test = f", test {s.test:.6f}" if s.test is not None else ""
    return f"val {s.val:.6f}{test} over {len(s.vals)} of {seeds} seed(s)"


def _mean(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.6f}"
    std = (sum((x - mean) ** 2 for x in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.6f} ± {std:.4f}"


def _signed(v: float | None) -> str:
    return "–" if v is None else f"{v:+.6f}"


def _margin(w) -> str:
    return "–" if w is None else f"±{w.margin:.6f}"
