"""The progress figure: the metric per experiment, what was kept, the running best, how far from the floor.

It is the picture people paste into a chat, so it is drawn for that size: large type, few colours, labels only
on the kept changes (the story of the run), and the points that have no figure (crashes, rejections) pinned to
the worse edge rather than dropped: the top where lower is better (val_bpb), the bottom where higher is (a task's
`goal = "maximize"`), so that the other edge reads as the best results. The band around the running best is the
noise the policy measured: a point inside it is no different from the best.
"""

from __future__ import annotations

import io
import textwrap

from autoresearch.see.facts import Facts, Row

KEEP, DISCARD, CRASH, REJECT = "#1a9850", "#9e9e9e", "#d73027", "#c51b7d"
BEST, TEST, FLOOR, VAL_ONLY = "#1a9850", "#4575b4", "#555555", "#e08214"
LEGEND_ORDER = ("baseline", "kept", "running best", "noise", "test_bpb", "val-only", "discarded", "crashed", "rejected",
                "entropy")
PINNED_Y = 0.975  # where points without a figure sit, in axes coordinates: the worse edge (1 - this at the bottom)
OFF_CHART_Y = 0.985  # where discards beyond the frame sit
LABEL_CHARS = 44  # kept changes are labelled with their description, cut to this many characters
FIGSIZE, DPI = (11.0, 5.6), 120  # 1320 x 672 px: sharp in a chat window, small as a file


def progress_png(facts: Facts) -> bytes:
    """The figure as PNG bytes (Agg backend: no display needed, safe in threads of a server)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_progress(ax, facts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": "autoresearch"})
    return buf.getvalue()


def draw_progress(ax, facts: Facts) -> None:
    from matplotlib.transforms import blended_transform_factory

    s = facts.summary
    finals = [r for r in facts.finals if r.status]
    keeps = [r for r in finals if r.status == "keep" and r.val_bpb is not None]
    discards = [r for r in finals if r.status == "discard" and r.val_bpb is not None]
    crashes = [r for r in finals if r.status == "crash"]
    rejects = [r for r in finals if r.status == "rejected"]
    last_x = max((r.number for r in facts.rows), default=1)

    sign = -1 if s.goal == "maximize" else 1  # sign * figure: larger is worse
    lo, hi = _y_range(keeps, discards, s.floor, sign)
    ax.set_ylim(lo, hi)
    ax.set_xlim(0.3, last_x + 0.7)
    edge = blended_transform_factory(ax.transData, ax.transAxes)  # x in data, y in axes: pinned to an edge

    def worse_edge(y: float) -> float:  # an axes y near the top, moved to the bottom where higher is better
        return y if sign > 0 else 1 - y

    beyond = [r for r in discards if (r.val_bpb > hi if sign > 0 else r.val_bpb < lo)]  # type: ignore[operator]
    inside = [r for r in discards if r not in beyond]
    ax.scatter([r.number for r in inside], [r.val_bpb for r in inside], s=28, color=DISCARD, alpha=0.8,
               zorder=2, label=f"discarded ({len(discards)})")
    if beyond:
        ax.scatter([r.number for r in beyond], [worse_edge(OFF_CHART_Y)] * len(beyond), s=34,
                   marker="^" if sign > 0 else "v", color=DISCARD, transform=edge, clip_on=False, zorder=2,
                   label="discarded, off the chart")
    if crashes:
        ax.scatter([r.number for r in crashes], [worse_edge(PINNED_Y)] * len(crashes), s=46, marker="x",
                   linewidths=2, color=CRASH, transform=edge, clip_on=False, zorder=3,
                   label=f"crashed ({len(crashes)}, no {facts.summary.metric})")
    if rejects:
        ax.scatter([r.number for r in rejects], [worse_edge(PINNED_Y)] * len(rejects), s=40, marker="v",
                   color=REJECT, transform=edge, clip_on=False, zorder=3, label=f"rejected ({len(rejects)}, not run)")

    if keeps:  # the running best: a step that drops at each keep and runs on to the last experiment
        xs = [r.number for r in keeps] + [last_x]
        ys = [r.val_bpb for r in keeps] + [keeps[-1].val_bpb]
        ax.step(xs, ys, where="post", color=BEST, linewidth=2, alpha=0.55, zorder=3, label="running best")
        if s.noise_std:
            ax.fill_between(xs, [y - s.noise_std for y in ys], [y + s.noise_std for y in ys], step="post",
                            color=BEST, alpha=0.12, linewidth=0, zorder=1,
                            label=f"noise ±1σ ({s.noise_std:.4f}" + (f", {s.noise_runs} baseline runs)"
                                                                      if s.noise_runs else ")"))
        ax.annotate(f"best {keeps[-1].val_bpb:.4f}", xy=(last_x, keeps[-1].val_bpb), xytext=(0, -5),
                    textcoords="offset points", ha="right", va="top", fontsize=10, fontweight="bold", color=BEST,
                    zorder=5)
        tests = [(r.number, r.test_bpb) for r in keeps if r.test_bpb is not None]
        if tests:
            tx = [n for n, _ in tests] + [last_x]
            ty = [t for _, t in tests] + [tests[-1][1]]
            ax.step(tx, ty, where="post", color=TEST, linewidth=1.4, linestyle="--", alpha=0.8, zorder=3,
                    label=("test_bpb" if facts.summary.metric == "val_bpb" else f"holdout {facts.summary.metric}")
                    + " of the best (held out)")
            ax.scatter([n for n, _ in tests], [t for _, t in tests], s=14, color=TEST, zorder=3)
        base = keeps[0] if keeps[0].number == 1 else None  # the unchanged train.py: a reference, not a keep
        changes = keeps[1:] if base else keeps
        if base:
            ax.scatter([base.number], [base.val_bpb], s=70, marker="D", color="white", edgecolors=BEST,
                       linewidths=1.8, zorder=4, label="baseline")
        if changes:
            ax.scatter([r.number for r in changes], [r.val_bpb for r in changes], s=60, color=KEEP,
                       edgecolors="white", linewidths=0.8, zorder=4, label=f"kept ({len(changes)})")
        doubtful = [r for r in keeps if r.val_only]
        if doubtful:
            ax.scatter([r.number for r in doubtful], [r.val_bpb for r in doubtful], s=190, facecolors="none",
                       edgecolors=VAL_ONLY, linewidths=1.8, zorder=4, label="val-only gain (test got worse)")

    if s.floor is not None:  # below the chart, it still gets its legend entry: how far there is to go
        below = s.floor < lo
        ax.axhline(s.floor, color=FLOOR, linestyle=(0, (5, 4)), linewidth=1.2, zorder=1,
                   label=f"entropy floor {s.floor:.4f}" + (" (below the chart)" if below else ""))

    ax.set_xlabel("experiment", fontsize=11)
    s = facts.summary
    ax.set_ylabel(f"{s.metric} ({'higher' if s.goal == 'maximize' else 'lower'} is better)", fontsize=11)
    ax.set_title(_title(facts), fontsize=13, loc="left")
    ax.grid(True, color="#e6e6e6", linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(labelsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if finals:  # under the axes, so it never hides a point
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: next(
            (k for k, p in enumerate(LEGEND_ORDER) if labels[i].startswith(p)), len(LEGEND_ORDER)))
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
                  bbox_to_anchor=(0.5, -0.11), ncol=min(len(labels), 4), fontsize=9.5, frameon=False,
                  handletextpad=0.4, columnspacing=1.6)
    ax.figure.tight_layout()
    if keeps:  # after the layout: labels are placed in pixels, so the axes must not move under them
        _label_keeps(ax, keeps, last_x)


def _title(facts: Facts) -> str:
    s = facts.summary
    head = f"autoresearch {s.tag}"
    if s.baseline is None or s.best is None:
        return f"{head}: {s.experiments} experiments, nothing kept yet"
    line = f"{head}: {s.metric} {s.baseline:.4f} → {s.best:.4f}"
    if s.gain_pct:  # the figure's own change: down for val_bpb, up for a maximized metric (as report.py says it)
        line += f" ({s.gain_pct if s.goal == 'maximize' else -s.gain_pct:+.1f}%)"
    return line + f" | {s.experiments} experiments, {s.kept} kept"


def _y_range(keeps: list[Row], discards: list[Row], floor: float | None, sign: int = 1) -> tuple[float, float]:
    """Frame the kept points and their test figures, and the discards near them; discards far worse are pinned to
    the worse edge instead, so one diverged run cannot flatten the story of the kept changes. `sign`: +1 where
    lower is better, -1 where higher is (the frame is found on sign * figure, where larger is worse)."""
    values = [sign * v for r in keeps for v in (r.val_bpb, r.test_bpb) if v is not None]
    if not values:
        return (floor or 0.0) - 0.1, (floor or 0.0) + 1.0
    lo, hi = min(values), max(values)
    span = max(hi - lo, 0.02 * abs(hi), 1e-3)
    hi = max([hi] + [sign * r.val_bpb for r in discards if r.val_bpb is not None and sign * r.val_bpb <= hi + 2 * span])
    if floor is not None and lo - sign * floor < 1.5 * span:  # the floor is near enough to show without squashing
        lo = min(lo, sign * floor)
    span = max(hi - lo, span)
    bottom, top = sorted((sign * lo, sign * hi))
    return bottom - 0.12 * span, top + 0.3 * span  # headroom for the labels


def _label_keeps(ax, keeps: list[Row], last_x: int) -> None:
    """Label each kept change with its description, rotated so it rises away from the point (or falls, near the
    top); take the first placement that stays inside the axes and clear of the labels already drawn."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list = []
    for i, r in enumerate(keeps):
        text = "baseline" if r.number == 1 and i == 0 else _short(r.description)
        side = -1 if r.number > 0.55 * last_x + 1 else 1  # late labels run leftwards so they stay in the figure
        label = ax.annotate(text, xy=(r.number, r.val_bpb), xytext=(6 * side, 8), textcoords="offset points",
                            rotation_mode="anchor", ha="left" if side > 0 else "right", fontsize=9.5,
                            color="#14532d", zorder=5, annotation_clip=False,
                            bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.8})
        choices = [(24 * side, "bottom", dy) for dy in (8, 24, -30, 40, -46, 56)]  # rising
        choices += [(-24 * side, "top", dy) for dy in (-8, -24, -40)]  # falling, for points near the top
        best = None
        for rot, va, dy in choices:
            label.set(rotation=rot, va=va)
            label.set_position((6 * side, dy))
            box = label.get_window_extent(renderer)
            inside = box.y1 <= frame.y1 + 2 and box.y0 >= frame.y0 and box.x0 >= 0 and box.x1 <= frame.x1 + 40
            if inside and not any(box.overlaps(b) for b in placed):
                best = (rot, va, dy)
                break
            if best is None and inside:
                best = (rot, va, dy)
        rot, va, dy = best or choices[0]
        label.set(rotation=rot, va=va)
        label.set_position((6 * side, dy))
        placed.append(label.get_window_extent(renderer))


def _short(text: str) -> str:
    return textwrap.shorten(" ".join(text.split()), width=LABEL_CHARS, placeholder="…")
