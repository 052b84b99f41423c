"""Trackers for real and offline: a real research loop logs live to MLflow (SQLite store), W&B (offline) and
TensorBoard (event files); each store is read back with the tracker's own reader; `track --replay` of the same
journal gives the same records; trackers that raise or hang change nothing; and the trackers' stores and
credentials stay out of reach of command agents and train.py."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from loopkit import ScriptedAgent, assert_consistent, fast_source
from trackread import mlflow_records, tensorboard_records, wandb_records

from autoresearch import vcs
from autoresearch.loop.core import Limits, Loop, LoopConfig
from autoresearch.loop.journal import Journal, read_results_tsv
from autoresearch.see.track import TRACKERS, TrackError
from autoresearch.see.track.config import TrackConfig, make_tracker, parse_names
from autoresearch.see.track.lanes import Tracking
from autoresearch.see.track.replay import replay
from autoresearch.settings import Settings

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
pytest.importorskip("tensorboard")

pytestmark = pytest.mark.timeout(600)

NAMES = ("mlflow", "wandb", "tensorboard")
TAG = "t"
BASE = fast_source(NOISE=0.01)  # seed noise, so the noise policy measures a real sigma
PROPOSALS = [
    (fast_source(NOISE=0.01, QUALITY=0.7), "sharper prior"),  # keep
    (fast_source(NOISE=0.01, QUALITY=0.1), "blunter prior"),  # discard
    (BASE.replace("tok = Tokenizer.load()", "tok = Tokenizer.load()\n1 / 0"), "divides by zero"),  # crash
    (BASE.replace("import time\n", "import time\nimport socket\n"), "opens a socket"),  # rejected (static check)
]


def config(store: Path, *names: str) -> TrackConfig:
    return TrackConfig(trackers=names, mlflow_uri=f"sqlite:///{store / 'mlflow.db'}", mlflow_experiment="exp",
                       wandb_mode="offline", wandb_dir=str(store / "wandb"), tensorboard_dir=str(store / "tb"))


def research_loop(ws: Path, tracking: Tracking | None) -> Loop:
    settings = Settings.load(ws / "autoresearch.toml")
    loop = Loop(ws, settings, ScriptedAgent(list(PROPOSALS)),
                LoopConfig(tag=TAG, policy="noise", noise_runs=1, confirm_runs=0, fix_attempts=0,
                           limits=Limits(max_experiments=1 + len(PROPOSALS))))
    loop.start()
    if tracking is not None:
        tracking.start(loop.journal, TAG, ws)
        loop.ledger.watchers.append(tracking.feed)
    loop.run_until_limit()
    return loop


def make_ws(ws: Path) -> Path:
    from conftest import TINY, TINY_TRAIN

    from autoresearch.workspace import init_workspace, set_constants

    init_workspace(ws, Settings(**TINY))
    (ws / "train.py").write_text(set_constants(BASE, TINY_TRAIN) if "DEVICE_BATCH_SIZE" in BASE else BASE)
    vcs.commit_all(ws, "the fast stand-in")
    return ws


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_cache):
    """One real research run (keep, discard, crash, rejected) logged live to all three trackers."""
    root = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root / "home"))
        mp.setenv("XDG_CACHE_HOME", str(root / "home" / ".cache"))
        mp.setenv("AUTORESEARCH_CACHE", str(tiny_cache))
        mp.delenv("WANDB_MODE", raising=False)
        ws = make_ws(root / "ws")
        mp.chdir(ws)
        said: list[str] = []
        cfg = config(root / "live", *NAMES)
        tracking = Tracking([make_tracker(n, ws, cfg) for n in NAMES], said.append)
        loop = research_loop(ws, tracking)
        t0 = time.monotonic()
        lines = tracking.close()
        closed = time.monotonic() - t0
        loop.journal.close()
        yield {"ws": ws, "root": root, "cfg": cfg, "said": said, "lines": lines, "closed": closed, "mp": mp}


def journal_of(ws: Path) -> Journal:
    return Journal(ws / ".autoresearch" / "journal.db")


def decided(ws: Path):
    """The journal's decided attempts in decision order, the best after each, and the research run's key."""
    journal = journal_of(ws)
    try:
        run = journal.run(TAG)
        recs = sorted((e for e in journal.experiments(TAG, done_only=True) if e.status),
                      key=lambda e: (e.finished_at, e.id))
        best, bests = None, []
        for e in recs:
            if e.status == "keep":
                best = e.evidence.get("mean", e.val_bpb)
            bests.append(best)
        return recs, bests, f"{TAG}-{run.base_commit[:8]}"
    finally:
        journal.close()


@pytest.mark.slow
def test_the_run_itself_is_what_it_should_be(tracked):
    rows = assert_consistent(tracked["ws"], TAG)
    assert [r["status"] for r in rows] == ["keep", "keep", "discard", "crash", "crash"]
    assert tracked["said"] == [], tracked["said"]  # nothing failed, nothing to say during the run
    assert all("5 experiments sent" in line and "not sent" not in line for line in tracked["lines"]), \
        tracked["lines"]


@pytest.mark.slow
def test_mlflow_holds_every_experiment_under_the_research_run(tracked):
    ws, cfg = tracked["ws"], tracked["cfg"]
    recs, bests, key = decided(ws)
    got = mlflow_records(cfg.mlflow_uri, "exp")
    research = next(v for v in got.values() if v["tags"]["autoresearch.kind"] == "research")
    children = {k: v for k, v in got.items() if v["tags"]["autoresearch.kind"] == "experiment"}
    assert research["tags"]["autoresearch.key"] == key
    assert len(children) == len(recs) == 5 and all(c["parent"] == key for c in children.values())
    assert research["name"] == TAG and research["status"] == "FINISHED"
    assert research["params"]["time_budget"] == "4.0" and research["params"]["profile"] == "cpu"
    assert research["tags"]["autoresearch.stop_reason"].startswith("reached --max-experiments")
    # The best-so-far, one point per decision, as the journal has it.
    series = research["metrics"]["best_val_bpb"]
    assert [(step, value) for step, value, _ in series] == [(i + 1, b) for i, b in enumerate(bests)]
    assert [ms for _, _, ms in series] == [round(e.finished_at * 1000) for e in recs]
    for e in recs:
        c = children[f"{key}/{e.number:04d}-{e.attempt}"]
        assert c["tags"]["autoresearch.decision"] == e.status and c["tags"]["autoresearch.agent"] == e.agent
        assert c["status"] == ("FAILED" if e.status in ("crash", "rejected") else "FINISHED")
        assert (c["start"], c["end"]) == (round(e.created_at * 1000), round(e.finished_at * 1000))
        assert c["artifacts"]["train.py"] == e.train_py
        assert c["params"]["SEED"] == "42"
        if e.status in ("keep", "discard"):
            assert c["metrics"]["val_bpb"][0][1] == e.val_bpb and c["params"]["QUALITY"] in ("0.3", "0.7", "0.1")
            assert c["metrics"]["train/loss"] == [(0, 5.0, round(e.finished_at * 1000))]  # the curve, by step
            assert c["metrics"]["steps"][0][1] == e.steps
            assert c["metrics"]["run_seconds"][0][1] == e.run_seconds
            assert "decision.margin" in c["metrics"] and "decision.sigma" in c["metrics"] or e.number == 1
        if e.test_bpb is not None:
            assert c["metrics"]["test_bpb"][0][1] == e.test_bpb
        if e.number > 1:
            assert c["artifacts"]["diff.patch"] == e.diff
    keep = next(e for e in recs if e.description == "sharper prior")
    assert "test_bpb" in children[next(k for k in children if k.endswith(f"/{keep.number:04d}-0"))]["metrics"]
    crash = next(c for c in children.values() if c["tags"]["autoresearch.decision"] == "crash")
    assert "ZeroDivisionError" in crash["artifacts"]["error.txt"]
    rejected = next(c for c in children.values() if c["tags"]["autoresearch.decision"] == "rejected")
    assert "socket" in rejected["tags"]["autoresearch.reason"]


@pytest.mark.slow
def test_wandb_offline_run_directories_hold_the_same(tracked):
    cfg = tracked["cfg"]
    recs, bests, _ = decided(tracked["ws"])
    got = wandb_records(Path(cfg.wandb_dir))
    research = next(v for v in got.values() if v["job_type"] == "research")
    runs = {v["name"]: v for v in got.values() if v["job_type"] == "experiment"}
    assert len(runs) == 5 and {v["group"] for v in got.values()} == {research["group"]}
    assert research["name"] == TAG and research["config"]["profile"] == "cpu"
    assert [(s, v["best_val_bpb"]) for s, v in research["history"]] == [(i + 1, b) for i, b in enumerate(bests)]
    assert research["summary"]["state"] == "stopped"
    for e in recs:
        run = next(v for k, v in runs.items() if k.startswith(f"#{e.number} "))
        assert run["tags"] == [e.status] and run["config"]["SEED"] == 42 and run["summary"]["agent"] == e.agent
        files = next(iter(run["artifacts"].values()))
        assert files["train.py"] == e.train_py
        if e.status in ("keep", "discard"):
            assert run["summary"]["val_bpb"] == e.val_bpb
            assert run["history"] == [(0, {"train/loss": 5.0, "train/tokens_per_second": 1.0})]
        if e.test_bpb is not None:
            assert run["summary"]["test_bpb"] == e.test_bpb


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_same(tracked):
    cfg = tracked["cfg"]
    recs, bests, _ = decided(tracked["ws"])
    got = tensorboard_records(Path(cfg.tensorboard_dir))
    assert sorted(got) == sorted([f"{TAG}/research"] + [f"{TAG}/{e.number:04d}-{e.attempt}" for e in recs])
    series = got[f"{TAG}/research"]["scalars"]["best/val_bpb"]
    assert [(s, v) for s, v, _ in series] == [(i + 1, pytest.approx(b, rel=1e-6)) for i, b in enumerate(bests)]
    for i, e in enumerate(recs):
        run = got[f"{TAG}/{e.number:04d}-{e.attempt}"]
        assert run["hparams"]["decision"] == e.status and run["hparams"]["QUALITY"] in (0.3, 0.7, 0.1)
        assert run["texts"]["train.py"] == [(i + 1, f"```\n{e.train_py}\n```")]
        if e.status in ("keep", "discard"):
            assert run["scalars"]["val_bpb"][0][:2] == (i + 1, pytest.approx(e.val_bpb, rel=1e-6))
            assert run["scalars"]["train/loss"] == [(0, 5.0, e.finished_at)]


@pytest.mark.slow
def test_replay_gives_the_same_records_as_live_logging(tracked):
    ws, root, live = tracked["ws"], tracked["root"], tracked["cfg"]
    again = config(root / "replayed", *NAMES)
    said: list[str] = []
    journal = journal_of(ws)
    try:
        counts = replay(journal, TAG, ws, [make_tracker(n, ws, again) for n in NAMES], said.append)
    finally:
        journal.close()
    assert {n: (c.sent, c.known, c.errors) for n, c in counts.items()} == {n: (5, 0, 0) for n in NAMES}, said
    assert mlflow_records(again.mlflow_uri, "exp") == mlflow_records(live.mlflow_uri, "exp")
    assert wandb_records(Path(again.wandb_dir)) == wandb_records(Path(live.wandb_dir))
    replayed, logged = tensorboard_records(Path(again.tensorboard_dir)), tensorboard_records(Path(live.tensorboard_dir))
    assert replayed == logged


@pytest.mark.slow
def test_replay_to_the_stores_it_was_logged_to_sends_nothing_twice(tracked):
    ws, live = tracked["ws"], tracked["cfg"]
    before = (mlflow_records(live.mlflow_uri, "exp"), tensorboard_records(Path(live.tensorboard_dir)))
    journal = journal_of(ws)
    try:
        counts = replay(journal, TAG, ws, [make_tracker(n, ws, live) for n in ("mlflow", "tensorboard")],
                        lambda line: None)
    finally:
        journal.close()
    assert {n: (c.sent, c.known) for n, c in counts.items()} == {"mlflow": (0, 5), "tensorboard": (0, 5)}
    assert (mlflow_records(live.mlflow_uri, "exp"), tensorboard_records(Path(live.tensorboard_dir))) == before


# -- trackers that fail --------------------------------------------------------------------------------------------

class Boom:
    """Raises on every call but open: a server that answers with errors."""

    name = "boom"

    def __init__(self, *a) -> None:
        self.calls = 0

    def where(self) -> str:
        return "nowhere"

    def private_paths(self) -> list[Path]:
        return []

    def open(self, research) -> None:
        pass

    def known(self, research) -> set[str]:
        return set()

    def send(self, research, entry) -> None:
        self.calls += 1
        raise ConnectionError("the server said 503")

    def close(self, research) -> None:
        raise ConnectionError("the server said 503")


class Hang(Boom):
    """The second send never returns: a server that stopped answering."""

    name = "hang"
    release = threading.Event()

    def send(self, research, entry) -> None:
        self.calls += 1
        if self.calls >= 2:
            self.release.wait(300)


@pytest.mark.slow
def test_a_tracker_that_raises_or_hangs_changes_nothing_and_says_so(tracked, tmp_path, tiny_cache, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tiny_cache))
    ws = make_ws(tmp_path / "ws")
    monkeypatch.chdir(ws)
    said: list[str] = []
    boom, hang = Boom(), Hang()
    tracking = Tracking([boom, hang], said.append, timeout=1.0, close_seconds=3.0)
    try:
        loop = research_loop(ws, tracking)
        t0 = time.monotonic()
        lines = tracking.close()
        waited = time.monotonic() - t0
        loop.journal.close()
    finally:
        Hang.release.set()
    # The same results as the run logged to working trackers: every decision and figure.
    mine, theirs = read_results_tsv(ws / "results.tsv"), read_results_tsv(tracked["ws"] / "results.tsv")
    assert [(r["status"], r["val_bpb"], r["description"]) for r in mine] == \
        [(r["status"], r["val_bpb"], r["description"]) for r in theirs]
    assert_consistent(ws, TAG)
    assert waited < 10, waited  # the hung tracker was not waited for past close_seconds
    failed = [s for s in said if s.startswith("tracking: boom failed")]
    assert len(failed) == 1 and "ConnectionError: the server said 503" in failed[0], said  # shown once
    dropped = [s for s in said if s.startswith("tracking: hang dropped")]
    assert len(dropped) == 1 and "has not returned for 1s" in dropped[0], said
    boom_line, hang_line = lines
    assert boom.calls == 5 and "0 experiments sent" in boom_line and "5 not sent (6 failed calls" in boom_line
    assert "track --replay --track boom" in boom_line
    assert "1 experiment sent" in hang_line and "4 not sent" in hang_line and "hung or fell behind" in hang_line


class Flaky(Boom):
    """Down when the run starts (open raises), up again later: it gets everything, once."""

    name = "flaky"

    def __init__(self) -> None:
        self.opens, self.sent = 0, []

    def open(self, research) -> None:
        self.opens += 1
        if self.opens == 1:
            raise ConnectionError("connection refused")

    def send(self, research, entry) -> None:
        self.sent.append(entry.key)

    def close(self, research) -> None:
        pass


@pytest.mark.slow
def test_a_tracker_down_at_the_start_gets_everything_once_it_is_back(tracked, monkeypatch):
    from autoresearch.see.track import lanes

    said: list[str] = []
    flaky = Flaky()
    tracking = Tracking([flaky], said.append)
    journal = journal_of(tracked["ws"])
    read_run = lanes.read_run
    # The session starts with the run's first 4 decisions on record; the 5th is decided while it runs.
    monkeypatch.setattr(lanes, "read_run", lambda *a: (lambda run, backlog: (run, backlog[:-1]))(*read_run(*a)))
    try:
        tracking.start(journal, TAG, tracked["ws"])
        last = max(journal.experiments(TAG, done_only=True), key=lambda e: e.finished_at)
        tracking.feed(last)  # the next decision: the tracker is back
        (line,) = tracking.close()
    finally:
        journal.close()
    recs, _, key = decided(tracked["ws"])
    assert flaky.sent == [f"{key}/{e.number:04d}-{e.attempt}" for e in recs]  # in decision order, none twice
    assert [s for s in said if "flaky failed" in s] == [said[0]] and "connection refused" in said[0]
    assert "5 experiments sent" in line and "not sent" not in line and "(after 1 failed call" in line, line


def test_resume_goes_on_with_the_run_s_trackers():
    from autoresearch.loop.options import RunOptions, resume_command

    stored = RunOptions(track=("mlflow", "tensorboard")).to_dict()
    again = RunOptions.from_dict(json.loads(json.dumps(stored)))  # as a session keeps it in the journal
    assert again.track == ("mlflow", "tensorboard")
    assert "--track mlflow --track tensorboard" in resume_command(TAG, again)


# -- configuration ---------------------------------------------------------------------------------------------

def test_names_config_and_clear_errors(tmp_path, monkeypatch):
    assert parse_names(["mlflow,wandb", "MLflow", "tensorboard"]) == ("mlflow", "wandb", "tensorboard")
    assert parse_names(["none"]) == ()
    with pytest.raises(TrackError, match="unknown tracker 'neptune': choose from mlflow, wandb, tensorboard"):
        parse_names(["neptune"])
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "autoresearch.toml").write_text('[workspace]\nprofile = "cpu"\n[track]\ntrackers = ["tensorboard"]\n'
                                          'tensorboard_dir = "/tmp/x"\ntimeout = 5\n')
    cfg = TrackConfig.load(ws)
    assert (cfg.trackers, cfg.tensorboard_dir, cfg.timeout) == (("tensorboard",), "/tmp/x", 5.0)
    (ws / "autoresearch.toml").write_text('[workspace]\nprofile = "cpu"\n[track]\nmlflow = "x"\n')
    with pytest.raises(TrackError, match=r"unknown key\(s\) under \[track\]: mlflow"):
        TrackConfig.load(ws)
    # A store in the workspace, where agents work, is refused; under .autoresearch/ or outside it is taken.
    with pytest.raises(TrackError, match="lies in the workspace, where agents work"):
        make_tracker("tensorboard", ws, TrackConfig(tensorboard_dir="tb"))
    assert make_tracker("tensorboard", ws, TrackConfig()).root == (ws / ".autoresearch" / "tensorboard").resolve()
    with pytest.raises(TrackError, match="lies in the workspace"):
        make_tracker("mlflow", ws, TrackConfig(mlflow_uri=f"sqlite:///{ws}/mlflow.db"))
    # W&B online needs a key, and says where to get one or how to log offline.
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(TrackError, match=r"`wandb login`.*wandb_mode = \"offline\""):
        make_tracker("wandb", ws, TrackConfig())
    (Path(os.environ["HOME"]) / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k-123\n")
    assert make_tracker("wandb", ws, TrackConfig()).mode == "online"
    # A missing client: the extra to install.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(TrackError, match=r"pip install 'autoresearch\[mlflow\]'"):
        make_tracker("mlflow", ws, TrackConfig())
    assert set(TRACKERS) == set(NAMES)


# -- what agents and train.py never get ------------------------------------------------------------------------------

CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": "mlflow-user", "MLFLOW_TRACKING_PASSWORD": "mlflow-secret",
               "MLFLOW_TRACKING_TOKEN": "mlflow-token", "WANDB_API_KEY": "wandb-secret"}

# The command agent: reports what it can see of the trackers, then makes its change.
SNOOP_AGENT = """\
import json, os, re, sys
from pathlib import Path
report, paths = Path(sys.argv[1]), sys.argv[2:]
seen = {"env": sorted(k for k in os.environ if k.startswith(("MLFLOW", "WANDB")))}
for p in paths:
    try:
        seen[p] = len(Path(p).read_bytes()) if Path(p).is_file() else sorted(os.listdir(p))
    except OSError as e:
        seen[p] = type(e).__name__
with open(report, "a") as f:
    f.write(json.dumps(seen) + "\\n")
t = os.environ["AUTORESEARCH_TRAIN_PY"]
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
source = re.sub(r"(?m)^QUALITY = [0-9.]+", f"QUALITY = {0.3 + 0.2 * n}", open(t).read())
open(t, "w").write(source)
print(f"Description: quality up, round {n}")
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trackers_credentials_and_stores_stay_out_of_reach_of_agents_and_train_py(tiny_workspace, tmp_path,
                                                                                   monkeypatch):
    from autoresearch.cli import cli

    ws = tiny_workspace
    # train.py prints the tracker credentials it can see (none, we check) into its log
    probe = ", ".join(f'os.environ.get("{name}")' for name in CREDENTIALS)  # literal names: the static check allows
    (ws / "train.py").write_text(fast_source().replace('print("---")', f'print("ENV", [{probe}])\nprint("---")'))
    vcs.commit_all(ws, "fast train.py that shows its environment")
    home = Path(os.environ["HOME"])
    (home / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password wandb-netrc-secret\n")
    (home / ".mlflow").mkdir()
    (home / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_password = secret\n")
    outside_tb = tmp_path / "tb-outside"  # a store outside the workspace: hidden from agents too
    (ws / "autoresearch.toml").write_text((ws / "autoresearch.toml").read_text() +
                                          f'\n[track]\ntensorboard_dir = "{outside_tb}"\nwandb_mode = "offline"\n')
    vcs.commit_all(ws, "track")
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AUTORESEARCH_TRACK", "mlflow,wandb,tensorboard")
    report = tmp_path / "seen.jsonl"
    (tmp_path / "agent.py").write_text(SNOOP_AGENT)
    looked_at = [ws / ".autoresearch" / "mlflow.db", ws / ".autoresearch" / "wandb", outside_tb,
                 home / ".netrc", home / ".mlflow" / "credentials"]
    agent = f"cmd:{sys.executable} {tmp_path / 'agent.py'} {report} " + " ".join(map(str, looked_at))
    r = CliRunner().invoke(cli, ["run", "--tag", TAG, "--agent", agent, "--policy", "greedy", "--max-experiments",
                                 "3", "--fix-attempts", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert_consistent(ws, TAG)
    for line in report.read_text().splitlines():
        seen = json.loads(line)
        assert seen.pop("env") == []
        assert all(v in ("PermissionError", []) for v in seen.values()), seen  # covered: unreadable or empty
    assert outside_tb.is_dir() and (ws / ".autoresearch" / "mlflow.db").is_file()
    for log in (ws / ".autoresearch" / "runs" / TAG).glob("*/run.log"):
        assert "ENV [None, None, None, None]" in log.read_text(), log.read_text()
    assert "tracking: mlflow: 3 experiments sent" in r.output and "tracking: wandb: 3" in r.output, r.output
    # `track` says where each tracker writes; `track --replay` finds everything there already.
    r = CliRunner().invoke(cli, ["track"], catch_exceptions=False)
    assert r.exit_code == 0 and "tensorboard" in r.output and str(outside_tb) in r.output, r.output
    r = CliRunner().invoke(cli, ["track", "--replay", "--track", "tensorboard"], catch_exceptions=False)
    assert r.exit_code == 0 and "0 experiments sent" in r.output and "3 there already" in r.output, r.output
