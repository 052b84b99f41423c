"""The dashboard: its JSON API read directly, then the page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report import FLOOR, HOSTILE, TAG, build_journal

from autoresearch.cli import cli
from autoresearch.loop.journal import Journal
from autoresearch.see.dashboard import serve
from autoresearch.see.facts import journal_path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_CHROMIUM = ("the dashboard test needs a real Chromium: `apt-get install -y chromium chromium-driver` "
                    "(Debian/Ubuntu; or set AUTORESEARCH_CHROMIUM to a Chromium binary) and "
                    "`pip install -e '.[test]'` for Playwright. Do not run `playwright install`.")


@pytest.fixture
def dashboard(tmp_path):
    """A server on a free port, following a run whose experiment 8 is training right now."""
    ws = tmp_path / "ws"
    build_journal(ws, running=True, cache=tmp_path / "cache")
    server = serve(ws, port=0, cache=tmp_path / "cache")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server, ws
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert not thread.is_alive()


def get(server, path: str, headers: dict | None = None, token: bool = True):
    """GET `path` as the page does: with the dashboard's token (token=False: without it)."""
    if token:
        path += ("&" if "?" in path else "?") + f"token={server.token}"
    req = urllib.request.Request(server.origin + path, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        return r.status, r.headers["Content-Type"], body


def get_json(server, path: str):
    status, ctype, body = get(server, path)
    assert status == 200 and ctype == "application/json"
    return json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def status_of(server, path: str, headers: dict | None = None, token: bool = True) -> int:
    try:
        return get(server, path, headers, token)[0]
    except urllib.error.HTTPError as e:
        return e.code


# -- the API --------------------------------------------------------------------------------------------------------

def test_state_has_the_run_the_best_and_the_live_loss(dashboard):
    server, ws = dashboard
    st = get_json(server, "/api/state")
    assert st["run"]["tag"] == TAG and st["run"]["state"] == "running"
    assert [e["label"] for e in st["experiments"]] == ["1", "2", "3", "4", "4.1", "5", "6", "7", "8"]
    by = {e["label"]: e for e in st["experiments"]}
    assert by["4.1"]["val_only"] and not by["7"]["val_only"] and not by["4"]["final"]
    assert by["8"]["state"] == "running" and by["8"]["status"] is None
    assert by["7"]["test_bpb"] == 1.64  # the human sees the held-out figure
    s = st["summary"]
    assert (s["baseline"], s["best"], s["floor"], s["experiments"]) == (1.6, 1.48, FLOOR, 7)
    assert st["best"]["number"] == 7 and st["best"]["val_bpb"] == 1.48
    assert "+NEW_7 = 2" in st["best"]["diff"] and "+# train.py 7.0" in st["best"]["diff_from_baseline"]
    assert st["current"]["number"] == 8 and st["current"]["description"] == "HEAD_DIM 64 -> 32"
    tr = st["training"]
    assert tr["live"] and tr["number"] == 8 and tr["steps"] == list(range(40))
    assert tr["loss"][0] == 6.0 and tr["last"]["step"] == 39 and tr["last"]["tokens_per_second"] == 12345
    assert tr["repeat"] is None

    # the noise policy repeats a run with another seed beside the first: the page follows the newest log
    repeat = ws / ".autoresearch" / "runs" / TAG / "0008-0-seed1" / "run.log"
    repeat.parent.mkdir()
    repeat.write_text("step 00000 (0.0%) | loss: 7.000000 | lrm: 1.00\nstep 00001 (1.0%) | loss: 6.900000 | lrm: 1.00\n")
    first = ws / ".autoresearch" / "runs" / TAG / "0008-0" / "run.log"
    os.utime(first, (time.time() - 60, time.time() - 60))
    tr = get_json(server, "/api/state")["training"]
    assert tr["repeat"] == 1 and tr["steps"] == [0, 1] and tr["loss"] == [7.0, 6.9]


def test_runs_experiment_and_errors(dashboard):
    server, ws = dashboard
    assert get_json(server, "/api/runs") == [{"tag": TAG, "branch": f"autoresearch/{TAG}", "agent":
                                              "anthropic:claude-test", "state": "running",
                                              "created_at": 1_700_000_000.0, "experiments": 7}]
    e = get_json(server, "/api/experiment/4/0")
    assert e["status"] == "crash" and e["error_tail"] == "RuntimeError: shape mismatch"
    assert get_json(server, "/api/experiment/4")["attempt"] == 1  # the last attempt by default
    assert HOSTILE in get_json(server, "/api/experiment/4/1")["diff"]  # raw in JSON; the page inserts it as text
    assert status_of(server, "/api/experiment/99") == 404
    assert status_of(server, "/api/state?tag=nope") == 404
    assert status_of(server, "/static/../dashboard.py") == 404
    assert status_of(server, "/static/vendor/uPlot.iife.min.js") == 200
    assert status_of(server, "/api/state", {"Host": f"evil.example:{server.server_address[1]}"}) == 403
    status, ctype, png = get(server, "/progress.png")
    assert ctype == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_needs_the_dashboard_s_token(dashboard):
    """A command agent keeps the host's network and may say any Host it likes: only the secret in the printed
    address opens the API (compared in constant time); the page itself holds no data and opens without it."""
    server, _ = dashboard
    assert server.url == f"{server.origin}/?token={server.token}" and len(server.token) >= 32
    for path in ("/api/state", "/api/runs", "/api/experiment/4", "/progress.png"):
        assert status_of(server, path, token=False) == 403
        wrong = server.token[:-1] + ("y" if server.token.endswith("x") else "x")  # one character off, never the same
        assert status_of(server, path + "?token=" + wrong, token=False) == 403
        assert status_of(server, path, {"X-Autoresearch-Token": server.token}, token=False) == 200
    try:
        get(server, "/api/state", token=False)
    except urllib.error.HTTPError as e:
        assert "autoresearch dashboard" in json.loads(e.read())["error"]
    assert status_of(server, "/", token=False) == 200 and status_of(server, "/static/app.js", token=False) == 200
    other = serve(server.workspace, port=0)
    try:
        assert other.token != server.token  # a secret per server
    finally:
        other.server_close()


def test_state_of_a_finished_run_and_of_no_run(tmp_path):
    ws = tmp_path / "ws"
    server = serve(ws, port=0)  # before the journal exists: the page waits for a run
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        st = get_json(server, "/api/state")
        assert st["run"] is None and st["experiments"] == [] and get_json(server, "/api/runs") == []
        build_journal(ws)
        log = ws / ".autoresearch" / "runs" / TAG / "0007-0" / "run.log"
        log.parent.mkdir(parents=True)
        log.write_text("step 00000 (0.0%) | loss: 5.0 | lrm: 1.00\nstep 00001 (50.0%) | loss: nan | lrm: 1.00\n")
        st = get_json(server, "/api/state")
        assert st["run"]["state"] == "stopped" and st["current"] is None
        assert st["training"]["number"] == 7 and not st["training"]["live"]
        assert st["training"]["loss"] == [5.0, None]  # a diverged loss is null, never NaN
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_cli_dashboard_reports_a_busy_port(tmp_path):
    ws = tmp_path / "ws"
    build_journal(ws)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(cli, ["dashboard", "-w", str(ws), "--port", str(port), "--no-open"])
    assert r.exit_code == 1 and "cannot listen on 127.0.0.1" in r.output and "--port" in r.output


def test_cli_dashboard_prints_its_address_with_the_token(tmp_path, monkeypatch):
    from autoresearch.see import dashboard

    ws = tmp_path / "ws"
    build_journal(ws)
    served = []

    def stop_at_once(self, poll_interval=0.5):
        served.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(dashboard.DashboardServer, "serve_forever", stop_at_once)
    r = CliRunner().invoke(cli, ["dashboard", "-w", str(ws), "--port", "0", "--no-open"])
    assert r.exit_code == 0, r.output
    assert f"at {served[0].origin}/?token={served[0].token} " in r.output


# -- the page, in a browser -----------------------------------------------------------------------------------------

def chromium() -> str:
    path = os.environ.get("AUTORESEARCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {path}: {INSTALL_CHROMIUM}")
    return path


@pytest.mark.slow
def test_page_follows_the_run_in_chromium(dashboard, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright is not installed: {INSTALL_CHROMIUM}")
    executable = chromium()
    server, ws = dashboard
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 1500})
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("request", lambda r: None if r.url.startswith(server.origin + "/") else problems.append(f"external: {r.url}"))
            page.goto(server.url, timeout=20_000)
            page.wait_for_selector("body[data-ready]", timeout=15_000)
            assert "token" not in page.url  # kept for the tab, out of the address bar
            page.reload()
            page.wait_for_selector("body[data-ready]", timeout=15_000)
            page.wait_for_function("document.querySelectorAll('#experiments tbody tr').length === 9", timeout=10_000)

            rows = page.locator("#experiments tbody tr")
            assert [rows.nth(i).get_attribute("data-n") for i in range(9)] == ["1", "2", "3", "4", "4.1", "5", "6",
                                                                              "7", "8"]
            text = page.inner_text("body")
            for desc in ("MATRIX_LR 0.04 -> 0.05", "swap the MLP for SwiGLU", "touch prepare.py", "HEAD_DIM 64 -> 32"):
                assert desc in text
            assert "1.6000 → 1.4800" in page.inner_text("#summary")
            assert "Now: experiment 8" in page.inner_text("#now-title")
            assert "step 39" in page.inner_text("#now-stats")
            assert page.locator("#progress-chart canvas").count() == 1
            assert page.locator("#loss-chart canvas").count() == 1
            assert page.locator("tr.val-only .badge.val-only").count() == 1
            assert "+NEW_7 = 2" in page.inner_text("#diff")

            # sorting by val_bpb puts the best first
            page.click("#experiments th:nth-child(5)")
            assert rows.first.get_attribute("data-n") == "7"

            # a row's diff, with the hostile text shown as text (no script ran: no dialog)
            page.click('#experiments tr[data-n="4.1"]')
            page.wait_for_function("document.getElementById('diff').textContent.includes('NEW_4')", timeout=5_000)
            assert HOSTILE in page.inner_text("#diff")

            # live: the log grows and the experiment finishes; the page follows within a poll or two
            log = ws / ".autoresearch" / "runs" / TAG / "0008-0" / "run.log"
            with log.open("a") as f:
                f.write("\nstep 00045 (100.0%) | loss: 3.210000 | lrm: 0.10 | dt: 120ms | tok/sec: 12,345 | "
                        "mfu: 1.2% | epoch: 1 | remaining: 0s\n")
            page.wait_for_function("document.getElementById('now-stats').textContent.includes('step 45')",
                                   timeout=10_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            j = Journal(journal_path(ws))
            rec = j.unfinished(TAG)
            j.update(rec.id, state="done", status="discard", outcome="ok", val_bpb=1.49, test_bpb=1.65,
                     finished_at=time.time())
            j.update_run(TAG, state="stopped", stop_reason="reached --max-experiments 8")
            j.close()
            page.wait_for_function("document.getElementById('runline').textContent.includes('max-experiments 8')",
                                   timeout=10_000)
            assert page.locator('#experiments tr[data-n="8"] .pill.discard').count() == 1
            assert "Last trained: experiment 8" in page.inner_text("#now-title")
            assert not problems, problems
        finally:
            browser.close()

    shot = (tmp_path / "dashboard.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 30_000
    w, h = struct.unpack(">II", shot[16:24])
    assert w == 1360 and h >= 1000
