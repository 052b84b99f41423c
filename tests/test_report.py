"""The report: progress.png and a self-contained report.html, read from a journal built here."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import struct
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY

from autoresearch.cli import cli
from autoresearch.harness.constants import eval_key, prepared_dir
from autoresearch.loop.journal import Journal
from autoresearch.see.facts import ReadOnlyJournal, gather, journal_path, pick_run, read_loss
from autoresearch.see.report import write_report
from autoresearch.settings import SETTINGS_FILE, Settings

TAG = "mar5"
FLOOR = 1.21
HOSTILE = '<script>alert("x")</script> & co'  # appears in a kept diff: must come out escaped
T0 = 1_700_000_000.0

# number, attempt, status, outcome, val, test, description, extra
PLAN = [
    (1, 0, "keep", "ok", 1.600, 1.620, "baseline", {}),
    (2, 0, "keep", "ok", 1.550, 1.570, "MATRIX_LR 0.04 -> 0.05", {}),
    (3, 0, "discard", "ok", 1.580, 1.600, "DEPTH 4 -> 6", {}),
    (4, 0, "crash", "crash", None, None, "swap the MLP for SwiGLU", {"reason": "exit code 1",
                                                                     "error_tail": "RuntimeError: shape mismatch"}),
    (4, 1, "keep", "ok", 1.500, 1.630, "swap the MLP for SwiGLU", {}),  # fix attempt; test got worse: val-only
    (5, 0, "rejected", "rejected", None, None, "touch prepare.py", {"reason": "the agent changed files other "
                                                                   "than train.py: prepare.py"}),
    (6, 0, "discard", "ok", 3.900, 3.950, "WARMUP_RATIO 0.0 -> 0.9", {}),  # far off the chart
    (7, 0, "keep", "ok", 1.480, 1.640, "WEIGHT_DECAY 0.0 -> 0.1", {}),  # test +0.01 < val gain 0.02: noise decides
]


def _diff(desc: str, n: int) -> str:
    return (f"--- a/train.py\n+++ b/train.py\n@@ -10,3 +10,3 @@\n context line {n}\n-OLD_{n} = 1\n"
            f"+NEW_{n} = 2  # {desc} {HOSTILE if n == 4 else ''}\n context after\n")


def build_journal(ws: Path, *, running: bool = False, noise: dict | None = None, cache: Path | None = None) -> Path:
    """A workspace journal with keeps, discards, a crash and its fix, a rejection; optionally one still running.

    With `cache`, writes the prepared dataset's meta.json there so the run has an entropy floor.
    """
    settings = Settings(**TINY)
    if not (ws / SETTINGS_FILE).exists():
        ws.mkdir(parents=True, exist_ok=True)
        (ws / SETTINGS_FILE).write_text(settings.to_toml())
    if cache is not None:
        meta = prepared_dir(settings, cache) / "meta.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"eval": {eval_key(settings): {"val": {"rows": 8, "floor_bpb": FLOOR},
                                                                  "test": {"rows": 8, "floor_bpb": FLOOR + 0.01}}}}))
    j = Journal(journal_path(ws))
    j.create_run(TAG, f"autoresearch/{TAG}", "b" * 40, "anthropic:claude-test", "greedy", asdict(settings))
    j.update_run(TAG, created_at=T0, state="running" if running else "stopped",
                 stop_reason="" if running else "reached --max-experiments 7", info={"noise": noise} if noise else {})
    t = T0
    for number, attempt, status, outcome, val, test, desc, extra in PLAN:
        rec = j.add_experiment(TAG, number, attempt, desc, f"# train.py {number}.{attempt}\n", "a" * 40,
                               agent="baseline" if number == 1 else "anthropic:claude-test")
        run_dir = ws / ".autoresearch" / "runs" / TAG / f"{number:04d}-{attempt}"
        values = dict(state="done", status=status, outcome=outcome, val_bpb=val, test_bpb=test,
                      memory_gb=None if val is None else 0.5 + number / 10, commit_sha=f"{number}{attempt}c0ffee" + "0" * 32,
                      created_at=t, finished_at=t + 400, run_seconds=None if status == "rejected" else 330.0,
                      agent_seconds=0 if number == 1 else 42.0, overhead_seconds=1.5, training_seconds=300.0,
                      run_dir="" if status == "rejected" else str(run_dir),
                      diff="" if number == 1 else _diff(desc, number), rationale=f"why {number}",
                      input_tokens=0 if number == 1 else 12000, output_tokens=0 if number == 1 else 800,
                      cost_usd=0.0 if number == 1 else 0.048, **extra)
        j.update(rec.id, **values)
        t += 600
    j.add_charge(TAG, 8, 1000, 0, 0.004)  # a failed agent call still costs
    if running:
        rec = j.add_experiment(TAG, 8, 0, "HEAD_DIM 64 -> 32", "# train.py 8\n", "7" * 40,
                               agent="anthropic:claude-test", cost_usd=0.05, input_tokens=100, output_tokens=10)
        run_dir = ws / ".autoresearch" / "runs" / TAG / "0008-0"
        run_dir.mkdir(parents=True, exist_ok=True)
        lines = ["compiling...", *(f"step {s:05d} ({s * 2.5:.1f}%) | loss: {6.0 - s * 0.05:.6f} | lrm: 1.00 | "
                                   f"dt: 120ms | tok/sec: 12,345 | mfu: 1.2% | epoch: 1 | remaining: {300 - 7 * s}s"
                                   for s in range(0, 40)), "step 00040 (100.0%) | lo"]  # a half-written last line
        (run_dir / "run.log").write_text("\n".join(lines))
        j.update(rec.id, state="running", commit_sha="8" * 40, run_dir=str(run_dir), created_at=t)
    j.close()
    return journal_path(ws)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# -- the facts the report is made of --------------------------------------------------------------------------------

def test_facts_summarize_the_run(tmp_path):
    build_journal(tmp_path / "ws", cache=tmp_path / "cache")
    j = ReadOnlyJournal(journal_path(tmp_path / "ws"))
    f = gather(j, pick_run(j, None), cache=tmp_path / "cache")
    s = f.summary
    assert (s.baseline, s.best, s.best_number) == (1.6, 1.48, 7)
    assert abs(s.gain - 0.12) < 1e-9 and abs(s.gain_pct - 7.5) < 1e-9
    assert (s.experiments, s.attempts, s.kept, s.discarded, s.crashed, s.rejected) == (7, 8, 3, 2, 0, 1)
    assert s.keep_rate == 0.5 and s.reject_rate == 1 / 6
    assert abs(s.cost - (7 * 0.048 + 0.004)) < 1e-9 and s.input_tokens == 7 * 12000 + 1000  # fix attempts cost too
    assert s.floor == FLOOR and s.noise_std is None and s.noise_runs is None
    assert abs(s.wall_hours - (7 * 600 + 400) / 3600) < 1e-9 and abs(s.per_hour - 7 / s.wall_hours) < 1e-9
    flagged = [r.label for r in f.rows if r.val_only]
    assert flagged == ["4.1"]  # test +0.06 > val gain 0.05; #7's test +0.01 is within its val gain 0.02
    assert [r.label for r in f.rows if not r.final] == ["4"]
    assert f.rows[2].delta == 1.58 - 1.55
    j.close()


def test_noise_floor_tightens_the_val_only_flag(tmp_path):
    noise = {"runs": [1.601, 1.598, 1.600], "std": 0.002, "mean": 1.5997, "tests": [1.62, 1.619, 1.621]}  # as loop writes
    build_journal(tmp_path / "ws", noise=noise)
    j = ReadOnlyJournal(journal_path(tmp_path / "ws"))
    f = gather(j, pick_run(j, TAG), cache=tmp_path / "nothing")
    assert (f.summary.noise_std, f.summary.noise_runs) == (0.002, 3) and f.summary.floor is None
    assert [r.label for r in f.rows if r.val_only] == ["4.1", "7"]  # +0.01 on test is 5 sigma
    j.close()


def test_read_loss_parses_progress_and_tolerates_a_torn_line(tmp_path):
    build_journal(tmp_path / "ws", running=True)
    curve = read_loss(tmp_path / "ws" / ".autoresearch" / "runs" / TAG / "0008-0" / "run.log")
    assert curve.steps == list(range(40)) and curve.loss[0] == 6.0
    assert curve.last["step"] == 39 and curve.last["remaining"] == 300 - 7 * 39
    thin = read_loss(tmp_path / "ws" / ".autoresearch" / "runs" / TAG / "0008-0" / "run.log", max_points=10)
    assert len(thin.steps) == 10 and thin.steps[0] == 0 and thin.steps[-1] == 39
    assert read_loss(tmp_path / "missing.log").steps == []


# -- the files ------------------------------------------------------------------------------------------------------

def test_report_writes_a_png_and_a_self_contained_page(tmp_path):
    ws = tmp_path / "ws"
    build_journal(ws, cache=tmp_path / "cache", noise={"std": 0.002, "runs": [1.6, 1.602, 1.598, 1.6, 1.6]})
    files = write_report(ws, out=tmp_path / "out", cache=tmp_path / "cache")
    png = files.png.read_bytes()
    w, h = png_size(png)
    assert 1000 <= w <= 1600 and 500 <= h <= 900 and 20_000 < len(png) < 300_000
    from matplotlib.image import imread

    pixels = imread(files.png)
    assert pixels.shape[:2] == (h, w) and pixels.std() > 0.05  # a real picture, not a blank canvas

    page = files.html.read_text()
    assert "1.6000 → 1.4800" in page and "0.1200 bpb (-7.50%)" in page  # baseline → best, gain
    assert "σ 0.0020" in page and "over 5 runs" in page and "60.0× the noise σ" in page and "1.2100" in page  # noise and entropy floor
    assert "$0.34" in page and "85,000 tokens in" in page
    rows = re.findall(r'<tr class="([^"]*)" data-n="([\d.]+)">', page)
    assert [n for _, n in rows] == ["1", "2", "3", "4", "4.1", "5", "6", "7"]
    classes = dict((n, c) for c, n in rows)
    assert "val-only" in classes["4.1"] and "val-only" in classes["7"] and "val-only" not in classes["2"]
    assert "superseded" in classes["4"] and "st-rejected" in classes["5"]
    assert page.count('class="badge val-only"') == 4  # the table and the kept diffs, for 4.1 and 7
    for _, _, _, _, _, _, desc, _ in PLAN:
        assert html.escape(desc) in page
    assert "the agent changed files other than train.py: prepare.py" in page
    # kept diffs, escaped and coloured; a discarded change's diff is not among them
    assert html.escape(HOSTILE) in page and HOSTILE not in page and "<script>alert" not in page
    assert '<span class="add">+NEW_2 = 2' in page and '<span class="del">-OLD_7 = 1</span>' in page
    assert "NEW_3" not in page
    # self-contained: no external resources at all
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == png
    assert "SortableTable" in page and "<style>" in page


def test_report_of_a_run_in_progress_and_of_nothing_kept(tmp_path):
    ws = tmp_path / "ws"
    build_journal(ws, running=True)
    files = write_report(ws, out=tmp_path / "out")
    page = files.html.read_text()
    assert 'data-n="8"' in page and "st-running" in page and "HEAD_DIM 64 -&gt; 32" in page

    empty = tmp_path / "empty"
    j = Journal(journal_path(empty))
    j.create_run("x", "autoresearch/x", "c" * 40, "search", "greedy", asdict(Settings(**TINY)))
    j.close()
    files = write_report(empty, out=tmp_path / "out2")
    assert png_size(files.png.read_bytes())[0] > 500
    assert "nothing kept yet" in files.html.read_text()


def test_cli_report_defaults_to_the_workspace_and_explains_a_missing_journal(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    build_journal(ws)
    monkeypatch.chdir(ws)
    r = CliRunner().invoke(cli, ["report"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = ws / ".autoresearch" / "report"
    assert str(out / "progress.png") in r.output and str(out / "report.html") in r.output
    assert (out / "progress.png").exists() and (out / "report.html").exists()

    r = CliRunner().invoke(cli, ["report", "--tag", "nope"])
    assert r.exit_code == 1 and "no run tagged 'nope'" in r.output

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / SETTINGS_FILE).write_text(Settings(**TINY).to_toml())
    r = CliRunner().invoke(cli, ["report", "--workspace", str(bare)])
    assert r.exit_code == 1 and "autoresearch run" in r.output


# -- what the chart and the summary must not get wrong -------------------------------------------------------------

def _drawn(facts):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from autoresearch.see.plot import draw_progress

    fig = Figure(figsize=(11, 5.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_progress(ax, facts)
    return ax, [t.get_text() for t in ax.get_legend().get_texts()]


def _add_session(j: Journal, started: float, ended: float | None, pid: int | None = None) -> None:
    s = j.start_session(TAG, {"agent": "anthropic:claude-test"})
    j.db.execute("UPDATE sessions SET started_at = ?, ended_at = ?, pid = ? WHERE id = ?",
                 (started, ended, pid or s.pid, s.id))


def test_the_chart_pins_failures_to_the_worse_end_and_shows_the_noise_band(tmp_path):
    build_journal(tmp_path / "ws", noise={"std": 0.002, "runs": [1.6, 1.602, 1.598, 1.6, 1.6]})
    j = ReadOnlyJournal(journal_path(tmp_path / "ws"))
    ax, labels = _drawn(gather(j, pick_run(j, None)))
    j.close()
    assert "baseline" in labels and "kept (3)" in labels  # the baseline is no keep: three changes were kept
    assert "noise ±1σ (0.0020, 5 baseline runs)" in labels
    band = [c for c in ax.collections if c.get_label().startswith("noise")]
    assert band and band[0].get_paths()[0].get_extents().height > 0
    pinned = [c for c in ax.collections if c.get_label().startswith(("crashed", "rejected"))]
    assert pinned and all(y > 0.5 for c in pinned for y in c.get_offsets()[:, 1])  # axes y: top, where worse is

    only = tmp_path / "only"
    j = Journal(journal_path(only))
    j.create_run(TAG, f"autoresearch/{TAG}", "c" * 40, "search", "greedy", asdict(Settings(**TINY)))
    rec = j.add_experiment(TAG, 1, 0, "baseline", "x", "c" * 40)
    j.update(rec.id, state="done", status="keep", outcome="ok", val_bpb=1.6, finished_at=T0)
    j.close()
    j = ReadOnlyJournal(journal_path(only))
    _, labels = _drawn(gather(j, pick_run(j, None)))
    j.close()
    assert "baseline" in labels and not any(label.startswith("kept") for label in labels)  # no "kept (0)"
    assert not any(label.startswith("noise") for label in labels)  # none measured: no band


def test_a_maximized_metric_is_drawn_with_the_worse_end_at_the_bottom(tmp_path):
    """A task's accuracy: higher is better, so the frame, the off-chart discards and the failures go by that."""
    ws = tmp_path / "ws"
    j = Journal(journal_path(ws))
    j.create_run(TAG, f"autoresearch/{TAG}", "c" * 40, "search", "greedy", asdict(Settings(**TINY)))
    j.update_run(TAG, info={"metric": {"name": "accuracy", "goal": "maximize"}})
    plan = [(1, "keep", 0.80), (2, "keep", 0.85), (3, "discard", 0.70), (4, "discard", 0.10), (5, "crash", None),
            (6, "keep", 0.90)]
    parent = "c" * 40
    for number, status, value in plan:
        rec = j.add_experiment(TAG, number, 0, "baseline" if number == 1 else f"change {number}", "x", parent)
        sha = parent if number == 1 else str(number) * 40
        j.update(rec.id, state="done", status=status, outcome="ok" if value is not None else "crash",
                 val_bpb=value, test_bpb=value, finished_at=T0 + number, commit_sha=sha)
        parent = sha if status == "keep" else parent
    j.close()
    j = ReadOnlyJournal(journal_path(ws))
    ax, labels = _drawn(gather(j, pick_run(j, None)))
    j.close()
    lo, hi = ax.get_ylim()
    assert lo < 0.70 and 0.90 < hi < 1.2, (lo, hi)  # the keeps and the near discard framed, the far one not
    assert "accuracy (higher is better)" == ax.get_ylabel()
    assert "accuracy 0.8000 → 0.9000 (+12.5%)" in ax.get_title(loc="left")  # up, as the accuracy went
    by_label = {c.get_label(): c.get_offsets()[:, 1] for c in ax.collections}
    off = next(v for k, v in by_label.items() if k.startswith("discarded, off the chart"))
    crashed = next(v for k, v in by_label.items() if k.startswith("crashed"))
    assert all(y < 0.5 for y in [*off, *crashed]), by_label  # axes y: the bottom, where worse is
    running = next(line for line in ax.get_lines() if line.get_label() == "running best")
    assert list(running.get_ydata()) == [0.80, 0.85, 0.90, 0.90]


def test_the_pace_counts_the_sessions_and_not_the_pause_between_them(tmp_path):
    from autoresearch.see.ui import summary_line

    build_journal(tmp_path / "ws")
    j = Journal(journal_path(tmp_path / "ws"))
    _add_session(j, T0, T0 + 1000)  # the first two attempts, then a stop
    _add_session(j, T0 + 1100 + 10 * 3600, None, pid=os.getpid())  # ten hours later; killed after its last result
    j.db.execute("UPDATE experiments SET created_at = created_at + 36000, finished_at = finished_at + 36000 "
                 "WHERE tag = ? AND created_at >= ?", (TAG, T0 + 1100))
    line = summary_line(j.final_attempts(TAG), run=j.run(TAG), sessions=j.sessions(TAG))
    j.close()
    j = ReadOnlyJournal(journal_path(tmp_path / "ws"))
    s = gather(j, pick_run(j, None)).summary
    j.close()
    active = 1000 + (7 * 600 + 400 - 1100)  # the second session ends with its last finished experiment
    assert s.wall_hours == pytest.approx(active / 3600) and s.per_hour == pytest.approx(7 / (active / 3600))
    assert f"7 experiments in {active / 60:.0f} min ({7 / (active / 3600):.0f}/h)" in line


def test_a_run_whose_process_is_gone_shows_its_experiment_interrupted(tmp_path):
    ws = tmp_path / "ws"
    build_journal(ws, running=True)
    j = Journal(journal_path(ws))
    _add_session(j, time.time(), None, pid=os.getpid())  # this process: alive
    j.close()
    j = ReadOnlyJournal(journal_path(ws))
    facts = gather(j, pick_run(j, None))
    assert facts.run.state == "running" and facts.rows[-1].state == "running"
    j.close()

    j = Journal(journal_path(ws))
    _add_session(j, T0 + 4000, None, pid=os.getpid())  # a pid that now belongs to a younger process: kill -9 of ours
    j.close()
    files = write_report(ws, out=tmp_path / "out")
    page = files.html.read_text()
    assert '<tr class="st-interrupted' in page and '<tr class="st-running' not in page
    assert "resume --tag mar5" in page  # the stop reason says how to go on
    j = ReadOnlyJournal(journal_path(ws))
    facts = gather(j, pick_run(j, None))
    j.close()
    assert facts.summary.state == "stopped" and facts.rows[-1].state == "interrupted"
