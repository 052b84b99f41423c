"""Shared fixtures. Every test runs with its own HOME and cache: nothing touches the user's directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # the reference implementations the benchmarks compare against

# One OpenMP thread for this process and every experiment it starts (they inherit it). The suite runs 3 processes
# on 2 cores, each starting experiments: with torch's default (a thread per core) the threads outnumber the cores,
# and OpenMP's waiting threads spin for a core they cannot get. The real-template search test beside two busy
# processes burned 142 s of CPU that way against 12 s with one thread (bench/RESULTS.md). Tiny models gain nothing
# from a second thread; tests of the thread shares (test_workers.py) pass the core count explicitly.
os.environ["OMP_NUM_THREADS"] = "1"

TINY = dict(profile="cpu", dataset="embedded", time_budget=4.0, max_seq_len=64, eval_tokens=2048, vocab_size=512,
            embedded_train_mb=0.4)
TINY_TRAIN = {"DEVICE_BATCH_SIZE": 8, "TOTAL_BATCH_SIZE": 512}


# -- a worker that dies -------------------------------------------------------------------------------------------
# pytest-xdist says only "node down: Not properly terminated" when a worker process dies (a kill, a closed
# channel). Each worker writes what it starts to a file; the controller prints the last lines of every worker's
# file when one goes down, and whether its process is dead or alive (then its channel was closed under it).
CRUMBS_ENV = "AUTORESEARCH_TEST_CRUMBS"


def pytest_configure(config):
    if not hasattr(config, "workerinput") and CRUMBS_ENV not in os.environ:  # the controller, or a plain run
        import tempfile

        os.environ[CRUMBS_ENV] = tempfile.mkdtemp(prefix="pytest-crumbs-")


def pytest_runtest_logstart(nodeid, location):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and os.environ.get(CRUMBS_ENV):
        import time

        with open(Path(os.environ[CRUMBS_ENV]) / worker, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} pid {os.getpid()} {nodeid}\n")


def pytest_testnodedown(node, error):
    if not error or not os.environ.get(CRUMBS_ENV):
        return
    import psutil

    lines = [f"worker {node.gateway.id} went down ({error}); what each worker started last:"]
    for crumbs in sorted(Path(os.environ[CRUMBS_ENV]).iterdir()):
        tail = crumbs.read_text().splitlines()[-3:]
        lines += [f"  {crumbs.name}: {line}" for line in tail]
        if crumbs.name == node.gateway.id and tail:
            pid = int(tail[-1].split()[2])
            try:
                state = psutil.Process(pid).status()
            except psutil.Error:
                state = "gone"
            lines.append(f"  {crumbs.name}'s process {pid}: " + ("dead (a zombie: killed or exited)"
                         if state in ("zombie", "gone") else f"{state}: alive, its channel was closed under it"))
    reporter = node.config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        reporter.write_line(line) if reporter else print(line, file=sys.stderr)


# The modules that take longest, longest first (seconds of a suite run on 2 cores, 2026-12-07: 233, 156, 129, 117,
# 109, 102, 98, 90, 74, 66, 65, 63, 62, 53, 42, 41). pytest-xdist hands out whole modules in collection order
# (setup.sh turns its own reorder off), so the last minute is short modules on every process rather than one long
# one left alone. A module missing here only starts later; the order changes no result.
LONGEST_FIRST = ("test_attacks.py", "test_loop.py", "test_backends_ray.py", "test_loop_agents.py", "test_examples.py",
                 "test_resume.py", "test_gpu_check.py", "test_workers.py", "test_runner.py", "test_task_files.py",
                 "test_task_attacks.py", "test_redteam.py", "test_track.py", "test_task_loop.py", "test_clock.py",
                 "test_ablate.py")


def pytest_collection_modifyitems(config, items):
    """`-m fast` is every test not marked slow: the developer's inner loop, about a minute on 2 cores."""
    for item in items:
        if item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module keeps its own order


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for var in ("AUTORESEARCH_WORKSPACE", "AUTORESEARCH_CACHE", "AUTORESEARCH_RESULT_FILE", "AUTORESEARCH_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    from autoresearch.harness import constants

    constants.workspace_settings.cache_clear()
    yield
    constants.workspace_settings.cache_clear()


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache with the tiny embedded corpus prepared once for the whole session."""
    from autoresearch.data.prepare import prepare
    from autoresearch.settings import Settings

    cache = tmp_path_factory.mktemp("cache")
    prepare(Settings(**TINY), cache, progress=lambda _: None, workers=1)
    return cache


@pytest.fixture
def tiny_workspace(tmp_path, tiny_cache, monkeypatch) -> Path:
    """An initialised workspace using the tiny settings and the prepared tiny cache, as the cwd."""
    from autoresearch import vcs
    from autoresearch.harness import constants
    from autoresearch.settings import Settings
    from autoresearch.workspace import init_workspace, set_constants

    ws = init_workspace(tmp_path / "ws", Settings(**TINY))
    train = ws / "train.py"
    train.write_text(set_constants(train.read_text(), TINY_TRAIN))  # one micro-batch per step: fast tests
    vcs.commit_all(ws, "tiny batch for tests")
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tiny_cache))
    monkeypatch.chdir(ws)
    constants.workspace_settings.cache_clear()
    return ws


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def environ_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
