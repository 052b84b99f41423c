"""`autoresearch report`: the progress plot and one self-contained HTML page about a run.

The page works offline and alone (mail it, attach it to an issue): its CSS and JS are inlined and the plot is
embedded as base64. Numbers come from `facts`, the same reading of the journal the dashboard serves.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.see.facts import Facts, ReadOnlyJournal, Row, Summary, gather, journal_path, pick_run
from autoresearch.see.plot import progress_png
from autoresearch.see.studies import VERDICT_NOTES, Ablation, Change, worth_text

ASSETS = Path(__file__).parent / "dashboard"  # web assets shared by the dashboard and this page
REPORT_DIR = Path(".autoresearch") / "report"


@dataclass
class ReportFiles:
    png: Path
    html: Path


def write_report(workspace: Path, out: Path | None = None, tag: str | None = None,
                 cache: Path | None = None) -> ReportFiles:
    """Read the run from the workspace's journal and write progress.png and report.html into `out`."""
    journal = ReadOnlyJournal(journal_path(workspace))
    try:
        facts = gather(journal, pick_run(journal, tag), cache)
    finally:
        journal.close()
    out = out or workspace / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    png = progress_png(facts)
    files = ReportFiles(png=out / "progress.png", html=out / "report.html")
    files.png.write_bytes(png)
    files.html.write_text(render_html(facts, png), encoding="utf-8")
    return files


def render_html(facts: Facts, png: bytes) -> str:
    s = facts.summary
    body = "\n".join([
        f"<header><h1>autoresearch · run <code>{_e(s.tag)}</code></h1>"
        f"<p class=sub>branch <code>{_e(s.branch)}</code> · agent <code>{_e(s.agent)}</code> · {_e(s.state)}"
        f"{' · ' + _e(s.stop_reason) if s.stop_reason else ''} · report written {time.strftime('%Y-%m-%d %H:%M')}"
        "</p></header>",
        summary_html(s),
        f'<section><h2>Progress</h2><img class=plot alt="{_e(s.metric)} per experiment" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}"></section>',
        f"<section><h2>Experiments</h2>{_named(table_html(facts.rows), s)}</section>",
        f"<section><h2>Kept changes</h2>{_named(kept_html(facts), s)}</section>",
        *([f"<section><h2>Transfer to other settings</h2>{transfers_html(facts)}</section>"]
          if facts.transfers else []),
        *([f"<section><h2>Agents</h2>{agents_html(facts)}</section>"] if len(facts.agents) > 1 else []),
    ])
    page = (ASSETS / "report.html").read_text(encoding="utf-8")
    return (page.replace("{{title}}", _e(f"autoresearch {s.tag}"))
            .replace("{{css}}", (ASSETS / "style.css").read_text(encoding="utf-8"))
            .replace("{{js}}", (ASSETS / "table.js").read_text(encoding="utf-8"))
            .replace("{{body}}", body))


# -- the pieces -----------------------------------------------------------------------------------------------------

def _test_name(s: Summary) -> str:
    return "test_bpb" if s.metric == "val_bpb" else f"holdout {s.metric}"


def _named(html: str, s: Summary) -> str:
    """A table's headers and notes in the run's own metric (they are written for val_bpb, the GPT task's)."""
    if s.goal == "maximize":  # the figure's columns sort best (highest) first, as val_bpb's do lowest first
        for name in ("val_bpb", "test_bpb"):
            html = html.replace(f"<th class=num>{name}</th>", f"<th class=num data-first=descending>{name}</th>")
    if s.metric == "val_bpb":
        return html
    return html.replace("test_bpb", _test_name(s)).replace("val_bpb", s.metric)


def summary_html(s: Summary) -> str:
    cards: list[tuple[str, str, str]] = []  # (label, value, detail)
    unit = " bpb" if s.metric == "val_bpb" else ""
    if s.baseline is not None and s.best is not None:
        cards.append((s.metric, f"{s.baseline:.4f} → {s.best:.4f}", f"baseline → best (#{s.best_number})"))
        change = None if s.gain_pct is None else (s.gain_pct if s.goal == "maximize" else -s.gain_pct)
        pct = f" ({change:+.2f}%)" if change is not None else ""
        cards.append(("gain", f"{s.gain:.4f}{unit}{pct}", _noise_ratio(s)))
    else:
        cards.append((s.metric, "–", "nothing kept yet"))
    if s.baseline_test is not None and s.best_test is not None:
        cards.append((_test_name(s) + " (held out)", f"{s.baseline_test:.4f} → {s.best_test:.4f}",
                      f"{s.best_test - s.baseline_test:+.4f}{unit}; never shown to the agent"))
    if s.floor is not None:
        gap = f"best is {s.best - s.floor:.4f} above it" if s.best is not None else ""
        cards.append(("entropy floor", f"{s.floor:.4f}", gap))
    if s.noise_std is not None:
        cards.append(("noise floor", f"σ {s.noise_std:.4f}", f"over {s.noise_runs} runs" if s.noise_runs else ""))
    rate = f"{s.per_hour:.1f} per hour" if s.per_hour else ""
    cards.append(("experiments", f"{s.experiments}", f"{s.attempts} attempts · {rate}".strip(" ·")))
    cards.append(("kept / crashed / rejected", f"{_pct(s.keep_rate)} / {_pct(s.crash_rate)} / {_pct(s.reject_rate)}",
                  f"{s.kept} kept · {s.discarded} discarded · {s.crashed} crashed · {s.rejected} rejected"))
    cards.append(("time", _hours(s.wall_hours), f"runs {_hours(s.train_hours)} · agent {_hours(s.agent_hours)}"))
    cards.append(("agent cost", f"${s.cost:.2f}", f"{s.input_tokens:,} tokens in · {s.output_tokens:,} out"))
    items = "".join(f"<div class=card><div class=k>{_e(k)}</div><div class=v>{_e(v)}</div>"
                    f"<div class=d>{_e(d)}</div></div>" for k, v, d in cards)
    return f"<section class=summary id=summary>{items}</section>"


COLUMNS = ("#", "commit", "status", "outcome", "val_bpb", "test_bpb", "Δ", "memory", "steps", "tok/s", "time", "cost",
           "description")


def table_html(rows: list[Row]) -> str:
    head = "".join(f"<th{' class=num' if c not in ('commit', 'status', 'outcome', 'description') else ''}>"
                   f"{_e(c)}</th>" for c in COLUMNS)
    body = "\n".join(_row_html(r) for r in rows)
    return (f"<div class=scroll><table class=sortable id=experiments><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>"
            "<p class=note>Click a header to sort. A number like 5.1 is the agent's first fix of its own crashed "
            "change 5; the row it replaced is dimmed. Δ is val_bpb minus the best before it.</p>")


def _row_html(r: Row) -> str:
    status = r.status or r.state
    classes = [f"st-{status}"] + ([] if r.final else ["superseded"]) + (["val-only"] if r.val_only else [])
    desc = _e(r.description)
    if r.attempt:
        desc += f' <span class="badge fix">fix {r.attempt}</span>'
    if r.val_only:
        desc += f' <span class="badge val-only" title="{_e(_val_only_why(r))}">val-only gain</span>'
    if r.load_note:
        desc += f'<div class=reason>{_e(r.load_note)}</div>'
    if r.status in ("crash", "rejected") and r.reason:
        desc += f'<div class=reason>{_e(r.outcome or r.status)}: {_e(r.reason)}</div>'
    cells = [
        (r.number + r.attempt / 10, r.label), (r.commit, f"<code>{_e(r.commit)}</code>"),
        (status, f"<span class=\"pill {_e(status)}\">{_e(status)}</span>"), (r.outcome or "", _e(r.outcome or "")),
        _num(r.val_bpb, ".6f"), _num(r.test_bpb, ".6f"), _num(r.delta, "+.4f"), _num(r.memory_gb, ".1f", " GB"),
        _num(r.steps, "d"), _num(r.tokens_per_second, ",.0f"),
        (r.seconds if r.seconds is not None else "", _duration(r.seconds)),
        (r.cost, f"${r.cost:.3f}" if r.cost else "–"), (r.description, desc),
    ]
    tds = "".join(f'<td data-v="{_e(str(v))}"{" class=num" if i not in (1, 2, 3, 12) else ""}>{shown}</td>'
                  for i, (v, shown) in enumerate(cells))
    return f'<tr class="{" ".join(classes)}" data-n="{r.label}">{tds}</tr>'


def kept_html(facts: Facts) -> str:
    keeps = [r for r in facts.keeps if r.number > 1]
    if not keeps:
        return "<p class=note>No change has been kept yet.</p>"
    parts = []
    prev = next((r for r in facts.keeps if r.number == 1), None)
    for r in keeps:
        rec = facts.record(r)
        change = f"val_bpb {prev.val_bpb:.6f} → {r.val_bpb:.6f}" if prev and prev.val_bpb is not None else ""
        if r.test_change is not None:
            change += f" · test_bpb {r.test_change:+.4f}"
        badge = (f' <span class="badge val-only" title="{_e(_val_only_why(r))}">val-only gain</span>'
                 if r.val_only else "")
        measured = facts.ablation.change(r.number) if facts.ablation else None
        if measured is not None and measured.worthless:
            badge += ' <span class="badge worthless" title="taking it out of the best changed nothing beyond the ' \
                     'noise (autoresearch ablate)">worth nothing</span>'
        parts.append(f'<details class=kept open id="kept-{r.number}"><summary><b>#{r.number}</b> '
                     f"<code>{_e(r.commit)}</code> {_e(r.description)}{badge}"
                     f"<span class=change>{_e(change)}</span></summary>"
                     f"{_worth_html(measured, facts.ablation) if measured else ''}"
                     f"{'<p class=rationale>' + _e(rec.rationale) + '</p>' if rec.rationale else ''}"
                     f"{diff_html(rec.diff)}</details>")
        prev = r
    return "\n".join(parts)


def _worth_html(change: Change, ablation: Ablation) -> str:
    return (f'<p class=worth data-verdict="{_e(change.verdict)}">measured worth (ablation of best '
            f"#{ablation.best_number}, {ablation.seeds} seed(s)): {_e(worth_text(change))}</p>")


def transfers_html(facts: Facts) -> str:
    """Each `autoresearch transfer`: the baseline and the best at another setting, and whether the gain held."""
    head = "".join(f"<th>{h}</th>" for h in ("setting", "budget", "seeds", "baseline test_bpb", "best test_bpb",
                                              "gain (test)", "margin", "run's own gain", "verdict"))
    rows = []
    for t in facts.transfers:
        setting = " ".join(f"{k}={v}" for k, v in t.overrides.items())
        g = t.gain
        rows.append(f"<tr><td><code>{_e(setting)}</code></td><td>{_e(t.budget)}</td><td class=num>{t.seeds}</td>"
                    f"<td class=num>{_fmt(t.baseline.test, '.6f')}</td><td class=num>{_fmt(t.best.test, '.6f')}</td>"
                    f"<td class=num>{_fmt(g.test if g else None, '+.6f')}</td>"
                    f"<td class=num>{_fmt(g.margin_test if g else None, '.6f')}</td>"
                    f"<td class=num>{_fmt(t.original.get('test'), '+.6f')}</td>"
                    f'<td title="{_e(VERDICT_NOTES[t.verdict])}"><b>{_e(t.verdict)}</b></td></tr>')
    return (f"<div class=scroll><table id=transfers><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table></div><p class=note>The baseline and the best, both at the setting, with that many "
            "seeds each. holds: the best still wins by more than the noise; shrinks: within it; reverses: the "
            "baseline wins.</p>")


def agents_html(facts: Facts) -> str:
    """Agents that ran side by side, compared: keep rate, val_bpb gained per hour, cost per kept improvement."""
    head = "".join(f"<th>{h}</th>" for h in ("agent", "experiments", "kept", "keep rate", "val_bpb gained",
                                              "gained per hour", "cost", "cost per keep"))
    body = "".join(
        f"<tr><td><code>{_e(a.agent)}</code></td><td class=num>{a.experiments}</td><td class=num>{a.kept}</td>"
        f"<td class=num>{_pct(a.keep_rate)}</td><td class=num>{a.gain:.4f}</td>"
        f"<td class=num>{'–' if a.gain_per_hour is None else f'{a.gain_per_hour:.4f}'}</td>"
        f"<td class=num>${a.cost:.2f}</td>"
        f"<td class=num>{'–' if a.cost_per_keep is None else f'${a.cost_per_keep:.2f}'}</td></tr>"
        for a in facts.agents)
    return f"<div class=scroll><table id=agents><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def diff_html(diff: str) -> str:
    """A unified diff, escaped, one span per line coloured by its kind."""
    if not diff.strip():
        return "<p class=note>(no diff recorded)</p>"
    lines = []
    for line in diff.splitlines():
        kind = ("meta" if line.startswith(("+++", "---")) else "hunk" if line.startswith("@@")
                else "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx")
        lines.append(f'<span class="{kind}">{_e(line) or " "}</span>')
    return f"<pre class=diff>{''.join(lines)}</pre>"  # block spans: a newline between them would double-space


# -- formatting -----------------------------------------------------------------------------------------------------

def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(v: float | None, spec: str, unit: str = "") -> tuple[object, str]:
    return ("", "–") if v is None else (v, format(v, spec) + unit)


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.0f}%"


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _noise_ratio(s: Summary) -> str:
    if s.noise_std and s.gain is not None:
        return f"{s.gain / s.noise_std:.1f}× the noise σ"
    return "best minus baseline" if s.goal == "maximize" else "baseline minus best"


def _val_only_why(r: Row) -> str:
    return f"kept for val_bpb, but the held-out test_bpb got worse by {r.test_change:+.4f}"
