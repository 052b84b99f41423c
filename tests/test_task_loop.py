"""The loop on a task workspace (tests/taskkit.py's "line" task: numpy, seconds), end to end through the commands:
`goal = maximize` keeps the higher figure, results.tsv, status and the report name the task's metric and never
val_bpb, a proposal that edits a fixed file is refused with its reason shown to the agent, the holdout column is
the task's holdout evaluation, 2 workers on CPU, ablate and transfer, and a resume after kill -9 of the
orchestrator."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from taskkit import TRAIN, make_task, scripted_agent

from autoresearch.cli import cli
from autoresearch.loop.policy import GreedyPolicy, NoisePolicy
from autoresearch.task.store import judge_dir

WORSE = TRAIN.replace("BIAS = 0.0 ", "BIAS = 0.6 ")  # the starting point: a biased classifier
BETTER = TRAIN  # BIAS 0: higher accuracy
WORST = TRAIN.replace("BIAS = 0.0 ", "BIAS = 3.0 ")
pytestmark = pytest.mark.timeout(600)


def invoke(*args: str, ok: bool = True):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert not ok or r.exit_code == 0, r.output
    return r


def rows(ws: Path) -> list[dict]:
    with open(ws / "results.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def task_run(tmp_path_factory):
    """One run of three proposals on a maximize task: better (kept), worse (discarded), an edit of the evaluator
    (refused). Shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("task_loop")
    task = make_task(tmp / "line", train_py=WORSE)
    ws = tmp / "ws"
    invoke("init", str(ws), "--task", str(task))
    agent = scripted_agent(tmp, [("bias to zero", {"train.py": BETTER}), ("bias to three", {"train.py": WORST}),
                                 ("a kinder evaluator", {"train.py": WORST.replace("3.0", "2.0"),
                                                         "evaluate.py": "print('{\"accuracy\": 1.0}')\n"})])
    old = os.getcwd()
    os.chdir(ws)
    try:
        invoke("run", "--tag", "t", "--agent", agent, "--no-agent-sandbox", "--policy", "greedy", "--noise-runs",
               "0", "--fix-attempts", "0", "--max-experiments", "5")
        status = invoke("status").output
        invoke("report")
    finally:
        os.chdir(old)
    return {"ws": ws, "tmp": tmp, "status": status}


def test_maximize_keeps_the_higher_figure_in_both_policies():
    for policy in (GreedyPolicy(sign=-1), NoisePolicy(sign=-1)):
        assert policy.decide([0.9], 0.8, sigma=0.001, df=10).keep
        assert not policy.decide([0.7], 0.8, sigma=0.001, df=10).keep
        assert policy.could_keep([0.9], 0.8) and not policy.could_keep([0.7], 0.8)
    assert GreedyPolicy().decide([0.7], 0.8).keep  # minimize, as before


@pytest.mark.slow
def test_a_task_run_keeps_the_higher_accuracy_and_names_its_metric(task_run):
    ws, got = task_run["ws"], rows(task_run["ws"])
    assert list(got[0]) == ["commit", "accuracy", "memory_gb", "status", "description"]
    assert [(r["description"], r["status"]) for r in got] == [
        ("baseline", "keep"), ("bias to zero", "keep"), ("bias to three", "discard"), ("a kinder evaluator", "crash"),
        ("a kinder evaluator", "crash")]  # results.tsv's status for a rejection (the original's three)
    assert float(got[1]["accuracy"]) > float(got[0]["accuracy"]) > float(got[2]["accuracy"])
    tip = subprocess.run(["git", "show", "autoresearch/t:train.py"], cwd=ws, capture_output=True, text=True).stdout
    assert tip == BETTER
    assert "accuracy" in task_run["status"] and "val_bpb" not in task_run["status"]
    html = next((ws / ".autoresearch").rglob("report.html")).read_text()
    assert "accuracy" in html and "val_bpb" not in html.split("<script")[0]
    assert "<th class=num data-first=descending>accuracy</th>" in html  # sorts best (highest) first
    assert "baseline minus best" not in html and "bpb" not in html.split("<script")[0]


@pytest.mark.slow
def test_an_edit_of_the_evaluator_is_refused_with_its_reason_shown(task_run):
    ws, tmp = task_run["ws"], task_run["tmp"]
    from autoresearch.loop.journal import Journal

    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        rec = next(e for e in journal.final_attempts("t") if e.number == 4)
    finally:
        journal.close()
    assert rec.status == "rejected" and "evaluate.py" in rec.reason and "fixed" in rec.reason
    shown = (tmp / "prompts" / "5.txt").read_text()  # the next proposal's prompt: the refusal, with its reason
    assert "fixed file(s) evaluate.py" in shown
    assert "print('{" not in (judge_dir(ws) / "evaluate.py").read_text()


@pytest.mark.slow
def test_the_holdout_column_is_the_tasks_holdout_evaluation_and_no_agent_sees_it(task_run):
    ws, tmp = task_run["ws"], task_run["tmp"]
    from autoresearch.loop.journal import Journal

    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        keeps = [e for e in journal.final_attempts("t") if e.status == "keep"]
    finally:
        journal.close()
    assert all(e.test_bpb is not None and 0.5 < e.test_bpb <= 1.0 for e in keeps)
    assert all(e.test_bpb != e.val_bpb for e in keeps)  # another split (100 other points)
    prompts = "".join(p.read_text() for p in (tmp / "prompts").iterdir())
    assert "accuracy" in prompts and "maximize" in prompts and "val_bpb" not in prompts
    assert not any(f"{e.test_bpb:.6f}" in prompts for e in keeps)


@pytest.mark.slow
def test_ablate_and_transfer_on_a_task(task_run):
    ws = task_run["ws"]
    old = os.getcwd()
    os.chdir(ws)
    try:
        out = invoke("ablate", "--seeds", "1").output
        assert "bias to zero" in out and "helps" in out, out  # maximize: the change's worth is positive
        out = invoke("transfer", "--set", "SCALE=2.0", "--seeds", "1").output
        assert "baseline" in out and "best" in out, out
        before = invoke("status").output
        for flag, value in (("--time-budget", "5"), ("--token-budget", "1000")):
            r = CliRunner().invoke(cli, ["transfer", "--set", "SCALE=2.0", "--seeds", "1", flag, value])
            assert r.exit_code != 0 and "task.toml" in r.output and "nothing was run" in r.output, r.output
        assert invoke("status").output == before
    finally:
        os.chdir(old)


@pytest.mark.slow
def test_two_workers_on_cpu_run_a_task(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--task", str(make_task(tmp_path / "line", train_py=WORSE)))
    monkeypatch.chdir(ws)
    invoke("run", "--tag", "w", "--agent", "search", "--policy", "greedy", "--noise-runs", "0", "--workers", "2",
           "--max-experiments", "5")
    got = rows(ws)
    assert len(got) == 5 and got[0]["status"] == "keep" and list(got[0])[1] == "accuracy", got
    from autoresearch.loop.journal import Journal

    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        workers = {e.worker for e in journal.final_attempts("w") if e.number > 1}
    finally:
        journal.close()
    assert workers == {1, 2}


@pytest.mark.slow
def test_a_task_run_resumes_after_kill_9(tmp_path):
    slow = WORSE.replace("import os\n", "import os, time\nPAUSE = 0.0\n").replace(
        "print(\"accuracy", "time.sleep(PAUSE)\nprint(\"accuracy")
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--task", str(make_task(tmp_path / "line", train_py=slow)))
    agent = scripted_agent(tmp_path, [("slower", {"train.py": slow.replace("PAUSE = 0.0", "PAUSE = 20.0")}),
                                      ("bias to zero", {"train.py": slow.replace("BIAS = 0.6 ", "BIAS = 0.0 ")})])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--tag", "k", "--agent", agent,
                             "--no-agent-sandbox", "--policy",
                             "greedy", "--noise-runs", "0", "--max-experiments", "3"], cwd=ws, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal_db = ws / ".autoresearch" / "journal.db"
    deadline = time.monotonic() + 300
    from autoresearch.loop.journal import Journal

    while time.monotonic() < deadline:  # wait until experiment 2 (the 20 s one) runs
        time.sleep(1)
        if journal_db.exists():
            j = Journal(journal_db)
            try:
                if any(e.number == 2 and e.state == "running" for e in j.experiments("k")):
                    break
            finally:
                j.close()
    else:
        proc.kill()
        pytest.fail("experiment 2 never started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    r = subprocess.run([sys.executable, "-m", "autoresearch", "run", "--resume", "--tag", "k"], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got = rows(ws)
    assert [x["description"] for x in got] == ["baseline", "slower", "bias to zero"], got
    assert got[2]["status"] == "keep" and list(got[0])[1] == "accuracy"
    tip = subprocess.run(["git", "rev-parse", "autoresearch/k"], cwd=ws, capture_output=True, text=True).stdout[:7]
    assert tip == got[2]["commit"]


@pytest.mark.slow
def test_the_trackers_and_the_dashboard_name_the_tasks_metric(task_run):
    from autoresearch.loop.journal import Journal
    from autoresearch.see.facts import gather
    from autoresearch.see.track.records import metric_of

    journal = Journal(task_run["ws"] / ".autoresearch" / "journal.db")
    try:
        run = journal.run("t")
        m = metric_of(run)
        assert (m.name, m.test_name, m.minimize) == ("accuracy", "holdout_accuracy", False)
        s = gather(journal, run).summary
    finally:
        journal.close()
    assert (s.metric, s.goal) == ("accuracy", "maximize") and s.gain > 0 and s.best > s.baseline


@pytest.mark.slow
def test_the_dashboard_page_speaks_the_task_s_metric_in_chromium(task_run, tmp_path):
    """The page of a maximize task, in a real browser: every figure is named by the task's metric (no val_bpb or bpb
    anywhere), the summary goes up from the baseline, and sorting by the metric puts the best (highest) first."""
    import threading

    from playwright.sync_api import sync_playwright
    from test_dashboard import CHROMIUM_ARGS, chromium

    from autoresearch.see.dashboard import serve

    server = serve(task_run["ws"], port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium(),
                                                           headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.goto(server.url, timeout=20_000)
                page.wait_for_selector("body[data-ready]", timeout=15_000)
                page.wait_for_function("document.querySelectorAll('#experiments tbody tr').length >= 4",
                                       timeout=10_000)
                text = page.inner_text("body")
                heads = page.locator("#experiments th").all_inner_texts()
                summary = page.inner_text("#summary")
                page.click("#experiments th:nth-child(5)")
                first = page.locator("#experiments tbody tr").first.inner_text()
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert not problems, problems
    assert "accuracy" in heads and "holdout accuracy" in heads, heads
    assert "bpb" not in text, [line for line in text.splitlines() if "bpb" in line]
    lines = [line.strip().lower() for line in summary.splitlines()]
    baseline, best = (float(x) for x in lines[lines.index("accuracy") + 1].split("→"))
    assert best > baseline and "best minus baseline" in lines, summary  # the gain of a maximize task
    assert "bias to zero" in first, first  # the kept change, the highest accuracy
