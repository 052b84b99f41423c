"""The attack catalogue (bench/attacks/) on tiny budgets: every hostile or broken train.py is handled, nothing is lost.

Two layers are checked separately:
- through the real loop (static check included), each attack ends with an expected outcome, is never kept, and
  git, the journal and results.tsv still agree (bench/attacks/_check.py); statically rejected attacks cost no run;
- defence in depth: attacks the static check rejects are run straight through the runner (the guard bypassed), and
  the run-time layers (runner, harness, sandbox) must stop them too, except the known gaps each module declares.

Limits are tiny so hangs and hogs cost seconds: a 0.5 s budget, a 3 s training allowance for the attacks meant
to run too long (an honest run trains ~1 s by the runner's clock, warm-up steps included; the other attacks get
30 s, so a busy machine never fails them for being slow), a 5 s hard limit for the hang, a 1500 MB memory limit,
one thread per experiment.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
from pathlib import Path

import pytest
from attacks import catalogue
from attacks._check import clear, held_out_in, measured_differently, problems, snapshot
from conftest import TINY, TINY_TRAIN
from loopkit import ScriptedAgent

from autoresearch import vcs
from autoresearch.loop.core import Limits, Loop, LoopConfig
from autoresearch.loop.journal import Journal
from autoresearch.run import sandbox
from autoresearch.run.compile_cache import SEED_DIR
from autoresearch.run.supervisor import Experiment, protect_orchestrator, run_experiment
from autoresearch.settings import Settings
from autoresearch.workspace import EDITABLE, RUN_DIR, init_workspace, set_constants

TAG = "attacks"
ATTACKS = catalogue()
REQUIRED = {"syntax_error", "import_error", "crash_mid_training", "nan_loss", "hang", "sleep_past_budget", "memory_hog",
            "child_process", "fake_val_bpb", "no_evaluation", "non_causal", "train_on_val", "read_test_split",
            "patch_harness", "write_outside", "delete_results", "network"}
SETTINGS = Settings(**TINY).replace(time_budget=0.5, time_allowance=30.0, memory_limit_mb=1500)
TIMING = dict(time_allowance=3.0)  # for attacks expected to run too long
TIMEOUT, HANG_TIMEOUT = 120.0, 5.0
SANDBOX = sandbox.describe()


def limits_for(expected: frozenset[str], name: str) -> tuple[Settings, float]:
    if name == "hang":
        return SETTINGS, HANG_TIMEOUT
    own = next(a.limits for a in ATTACKS if a.name == name)
    if own:
        return SETTINGS.replace(**own), TIMEOUT
    return (SETTINGS.replace(**TIMING) if expected == {"timeout"} else SETTINGS), TIMEOUT


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_cache):
    """A workspace whose run `attacks` holds the measured baseline; each test works on a copy of it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")  # tiny models gain nothing from threads; a busy 2-core machine loses a lot
    ws = init_workspace(tmp_path_factory.mktemp("attacks") / "ws", Settings(**TINY))
    (ws / EDITABLE).write_text(set_constants((ws / EDITABLE).read_text(), TINY_TRAIN))
    vcs.commit_all(ws, "tiny batch for tests")
    loop = Loop(ws, SETTINGS, ScriptedAgent([]), LoopConfig(tag=TAG, policy="greedy", fix_attempts=0, timeout=TIMEOUT,
                                                             cache=tiny_cache, limits=Limits(max_experiments=1)))
    loop.start()
    loop.run_until_limit()
    base = loop.journal.final_attempts(TAG)[0]
    loop.journal.close()
    assert base.outcome == "ok", f"the baseline failed: {base.reason}\n{base.error_tail}"
    yield ws
    mp.undo()


@pytest.fixture
def ws(baseline, tmp_path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(baseline, copy, symlinks=True)
    return copy


def test_the_catalogue_covers_the_required_attacks():
    names = {a.name for a in ATTACKS}
    assert REQUIRED <= names, f"missing: {sorted(REQUIRED - names)}"
    assert len(names) == len(ATTACKS)


def open_holes(attacks, layer_fails):
    """The attacks, those that get through this test's layer today (OPEN, see bench/attacks) marked xfail."""
    return [pytest.param(a, marks=pytest.mark.xfail(strict=True, reason=f"open hole: {a.open}"))
            if a.open and layer_fails(a) else a for a in attacks]


# Attacks caught by chance (CHANCE: the scorer's probes are drawn from the OS) are left out: one draw proves nothing.
# tests/test_evaluate.py measures the probes' power over many draws; bench/attacks.py runs these too.
CERTAIN = [a for a in ATTACKS if a.chance is None and not a.agent]
AGENTS = [a for a in ATTACKS if a.agent]  # command agents' attacks: test_a_command_agent_learns_no_held_out_figure
OPEN = open_holes(CERTAIN, lambda a: not a.static)  # the static check stops the others before they run


@pytest.mark.slow
@pytest.mark.parametrize("attack", OPEN, ids=[a.name for a in CERTAIN])
def test_the_loop_handles_it(attack, ws, tiny_cache, request):
    template, best = (ws / EDITABLE).read_text(), vcs.head(ws)
    settings, timeout = limits_for(attack.expect, attack.name)
    agent = ScriptedAgent([(attack.source(template), f"attack: {attack.name}")])
    loop = Loop(ws, settings, agent, LoopConfig(tag=TAG, policy="greedy", fix_attempts=0, resume=True,
                                                timeout=timeout, cache=tiny_cache, limits=Limits(max_experiments=2)))
    snap = snapshot(attack)
    request.addfinalizer(lambda: clear(snap))
    loop.start()
    loop.run_until_limit()
    rec = loop.journal.final_attempts(TAG)[-1]
    base = loop.journal.final_attempts(TAG)[0]
    loop.journal.close()
    assert rec.number == 2
    said = (f"{rec.status}/{rec.outcome}, val_bpb {rec.val_bpb} (baseline {base.val_bpb}): {rec.reason}\n"
            f"{rec.error_tail}")
    assert rec.outcome in attack.expect, said
    if rec.outcome == "ok":  # neutralised: it ran and was scored, on the harness's own yardstick
        assert measured_differently(base.metrics["harness"], rec.metrics["harness"]) == []
        best = vcs.head(ws)  # an honest score may win or lose
    else:
        assert rec.status != "keep", said
        assert not attack.reason or re.search(attack.reason, rec.reason), said
    assert (not rec.run_dir) == attack.static, ("rejected before running" if not rec.run_dir else "ran") + ": " + said
    if attack.name == "hang":
        assert rec.training_seconds is None, "a timeout that was not the hang's"
    assert problems(ws, TAG, 2, best, snap) == []


@pytest.fixture
def listener():
    """A TCP server on the host's loopback that counts connections (none may come from inside the sandbox)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    hits: list[tuple] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except OSError:
                continue
            hits.append(addr)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    stop.set()
    thread.join(timeout=2)
    server.close()


# Run-time layers the suite already shows elsewhere (kept out to stay fast; `python bench/attacks.py --runtime-only`
# runs every one of them, and bench/RESULTS.md has its table).
SHOWN_ELSEWHERE = {
    "child_process": "test_runner.py::test_a_process_left_running_is_killed_and_the_run_gets_no_score",
    "shrink_eval": "the scorer in its own process, as patch_harness here",
    "timer_patched": "the runner's training clock, as sleep_past_budget and untimed_training here",
    "finetune_on_served_split": "test_runner.py::test_time_before_the_first_answer_is_limited_for_an_agent_s_run",
    "train_during_eval_unseen": "test_runner.py::test_time_before_the_first_answer_is_limited_for_an_agent_s_run",
    "peek_beyond_shared_prefix": "test_evaluate.py::test_the_schedule_serves_every_row_once_with_probes_in_other_calls",
    "persist_in_tmp": "test_sandbox.py::test_dev_shm_and_tmp_are_private_to_the_run_and_stay_so",
    "persist_via_config_namespace": "test_sandbox.py::test_dev_shm_and_tmp_are_private_to_the_run_and_stay_so",
    "regenerate_eval_split": "test_prepare.py::test_splits_are_tokenized_documents_starting_with_bos (the salt)",
    "memorise_eval_files": "test_runner.py::test_train_py_cannot_open_the_val_or_test_files_by_any_path",
    "val_from_files": "test_runner.py::test_train_py_cannot_open_the_val_or_test_files_by_any_path",
    "patch_math_via_config": "the scorer in its own process, as patch_harness here",
    "forge_via_module_alias": "test_runner.py::test_a_result_forged_on_train_py_s_channel_changes_nothing",
    "forge_via_inherited_fd": "test_runner.py::test_a_result_forged_on_train_py_s_channel_changes_nothing",
    "forge_channel": "test_runner.py::test_a_result_forged_on_train_py_s_channel_changes_nothing",
    "forge_malformed_result": "test_redteam.py::test_a_malformed_result_on_train_py_s_channel_is_ignored_not_raised",
    "train_during_eval": "test_redteam.py::test_training_inside_the_evaluation_is_not_free (the parameter check); "
                         "test_runner.py::test_time_before_the_first_answer_is_limited_for_an_agent_s_run",
}
DEFENCE_IN_DEPTH = [a for a in CERTAIN if a.static and a.runtime is not None and a.name not in SHOWN_ELSEWHERE]


def needs(attack) -> str | None:
    """Why this machine cannot show the run-time layer stopping `attack` (None: it can)."""
    layer = attack.runtime_layer or ""
    if layer == "sandbox: filesystem" and "filesystem confined" not in SANDBOX:
        return "the sandbox cannot confine the filesystem here: " + SANDBOX
    if layer == "sandbox: network" and "network isolated" not in SANDBOX:
        return "the sandbox cannot isolate the network here: " + SANDBOX
    if layer.startswith("sandbox: private ") and not re.search(r"private [^(;]*" + re.escape(layer.split()[-1]), SANDBOX):
        return f"the sandbox cannot give each run its own {layer.split()[-1]} here: " + SANDBOX
    if layer == "sandbox: signals" and "signals scoped" not in SANDBOX:
        return "the sandbox cannot scope signals here (Landlock ABI < 6): " + SANDBOX
    return None


@pytest.mark.slow
@pytest.mark.parametrize("attack", open_holes(DEFENCE_IN_DEPTH, lambda a: True),
                         ids=[a.name for a in DEFENCE_IN_DEPTH])
def test_the_run_time_layers_stop_it_too(attack, ws, tiny_cache, listener, request):
    """Statically rejected attacks, run anyway (the guard bypassed): the runner, harness or sandbox stops them."""
    if why := needs(attack):
        pytest.skip(why)
    port, hits = listener
    source = attack.source((ws / EDITABLE).read_text())
    if attack.name == "network":  # a server we can watch, instead of the internet this machine may not reach
        from attacks import network

        source = source.replace(network.TARGET, f"http://127.0.0.1:{port}/model.pt")
    if attack.name == "signal_orchestrator":  # if it got through, it must not stop the test run
        source = source.replace("signal.SIGTERM", "signal.SIGCONT")
    settings, timeout = limits_for(attack.runtime, attack.name)
    protect_orchestrator()  # as the loop does: escaped processes are re-parented to us, our environ is unreadable
    snap = snapshot(attack)
    request.addfinalizer(lambda: clear(snap))
    best = vcs.head(ws)
    journal = Journal(ws / RUN_DIR / "journal.db")
    first = (journal.final_attempts(TAG)[0].metrics or {}).get("harness", {}).get("first_answer_seconds")
    journal.close()
    result = run_experiment(Experiment(source=source, workspace=ws, settings=settings, timeout=timeout,
                                       run_dir=ws / RUN_DIR / "runs" / TAG / "0002-0", cache=tiny_cache,
                                       compile_cache=ws / RUN_DIR / SEED_DIR,  # as the loop runs an agent's run:
                                       first_answer_limit=10.0 + 3.0 * first if first else None))
    said = f"{result.status}: {result.reason}\n{result.error_tail}"
    assert result.status in attack.runtime, said
    assert not attack.runtime_reason or re.search(attack.runtime_reason, result.reason + result.error_tail), said
    assert hits == []
    if attack.leak:  # the test split was served (no keep policy here): does a record carry what it measured there?
        from attacks import _heldout

        estimate = float(_heldout.ESTIMATE.findall(result.log_path.read_text())[-1])
        read = attack.leak(result.memory_gb, result.error_tail)
        assert read is None or abs(read - estimate) > _heldout.LEAK_TOLERANCE, f"leaked {read}"
    assert problems(ws, TAG, 1, best, snap) == []  # the records of the run are as the baseline left them
    journal = Journal(ws / RUN_DIR / "journal.db")
    assert len(journal.final_attempts(TAG)) == 1
    journal.close()


def _can_confine_agents() -> str:
    """'' when this machine confines command agents as the loop does; else why not."""
    import subprocess

    from autoresearch.agents import command

    here = Path(__file__).parent
    out = subprocess.run([*command.confinement("probe", here, here / "no-such-cache"), "true"], capture_output=True,
                         text=True, timeout=60)
    return "" if out.returncode == 0 else out.stderr.strip() or "the launcher failed"


@pytest.mark.slow
@pytest.mark.parametrize("attack", AGENTS, ids=[a.name for a in AGENTS])
def test_a_command_agent_learns_no_held_out_figure(attack, ws, tiny_cache, tmp_path, request):
    """The attack's agent runs as the loop runs agents (confined), with a dashboard serving the workspace beside it
    on 127.0.0.1 and its port told to the agent: nothing it proposes may carry a test figure."""
    import sys
    import threading

    from autoresearch.agents.command import make_command_agent
    from autoresearch.see.dashboard import serve

    if why := _can_confine_agents():
        pytest.skip(f"cannot confine agents here: {why}")
    server = serve(ws, port=0, cache=tiny_cache)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    script = tmp_path / f"{attack.name}.py"
    script.write_text(attack.agent)
    agent = make_command_agent(f"cmd:{sys.executable} {script} {server.server_address[1]}", timeout=60,
                               cache=tiny_cache)
    try:
        loop = Loop(ws, SETTINGS, agent, LoopConfig(tag=TAG, policy="greedy", fix_attempts=0, resume=True,
                                                    timeout=TIMEOUT, cache=tiny_cache,
                                                    limits=Limits(max_experiments=2)))
        snap = snapshot(attack)
        request.addfinalizer(lambda: clear(snap))
        loop.start()
        loop.run_until_limit()
        rec = loop.journal.final_attempts(TAG)[-1]
        loop.journal.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert rec.number == 2 and rec.outcome in attack.expect, (rec.outcome, rec.reason, rec.description)
    assert held_out_in(ws, TAG, rec.train_py, rec.description) == [], rec.description
    assert "dashboard said no (HTTPError: HTTP Error 403" in rec.description  # it tried: the token stopped it
    assert problems(ws, TAG, 2, vcs.head(ws), snap) == []
