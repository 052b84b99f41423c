"""A task whose agent may change two files (editable = ["train.py", "model.py"]): every agent reaches model.py.

`search` tunes model.py's CAPS constants as it tunes train.py's; a scripted LLM edits model.py with a SEARCH/REPLACE
block under the file's name; a command agent edits it in its checkout, and one that edits the evaluator is refused
with the reason shown in the next prompt; what is kept is committed as every file it changed, the journal holds the
files and one diff over all of them, and a resume continues from the kept files.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakellm import Reply, fake_llm  # noqa: F401  (fixture)
from taskkit import TOML, TRAIN, make_task, scripted_agent

from autoresearch.cli import cli
from autoresearch.loop.journal import Journal
from autoresearch.loop.merge import merge_files
from autoresearch.workspace import set_constants

pytestmark = pytest.mark.timeout(600)

MODEL = """\
BIAS = 2.0  # added to the decision value: 0 is best
SCALE = 1.0  # the learned weights times this
"""
# train.py takes its constants from model.py: it has none of its own, so whatever `search` changes is in model.py
TRAIN_M = TRAIN.replace("BIAS = 0.0  # added to the decision value: 0 is best\n", "").replace(
    "SCALE = 1.0  # the learned weights times this\n", "").replace(
    "import numpy as np\n", "import numpy as np\nfrom model import BIAS, SCALE\n")
GOOD_MODEL = MODEL.replace("BIAS = 2.0", "BIAS = 0.0")
TWO_FILES = TOML.replace('editable = ["train.py"]', 'editable = ["train.py", "model.py"]')


def invoke(*args: str):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def rows(ws: Path) -> list[dict]:
    with open(ws / "results.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def records(ws: Path, tag: str):
    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        return journal.final_attempts(tag)
    finally:
        journal.close()


def at(ws: Path, ref: str, name: str) -> str:
    return subprocess.run(["git", "show", f"{ref}:{name}"], cwd=ws, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def ws(tmp_path, monkeypatch):
    assert "BIAS" not in TRAIN_M.split("from model import")[0] and "from model import BIAS, SCALE" in TRAIN_M
    task = make_task(tmp_path / "line", toml=TWO_FILES, train_py=TRAIN_M, model_py=MODEL)
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--task", str(task))
    monkeypatch.chdir(ws)
    return ws


def test_merge_files_applies_each_files_change_and_says_when_one_conflicts():
    base = {"model.py": "A = 1\nB = 2\n"}
    assert merge_files(base, base, {"model.py": "A = 3\nB = 2\n"}) == {"model.py": "A = 3\nB = 2\n"}
    assert merge_files(base, {"model.py": "A = 1\nB = 5\n"}, {"model.py": "A = 3\nB = 2\n"}) == {
        "model.py": "A = 3\nB = 5\n"}  # two constants: merged by name
    assert merge_files(base, {"model.py": "A = 4\nB = 2\n"}, {"model.py": "A = 3\nB = 2\n"}) is None
    assert merge_files(base, {"model.py": "A = 4\nB = 2\n"}, base) == {"model.py": "A = 4\nB = 2\n"}
    assert merge_files({}, {}, {}) == {}


def test_a_reply_edits_another_file_under_its_name_and_an_unknown_name_is_sent_back():
    from autoresearch.agents.base import Context
    from autoresearch.agents.prompt import ReplyError, build_prompt, parse_reply, parse_reply_files

    files = {"model.py": MODEL}
    edit = ("<<<<<<< SEARCH\nBIAS = 2.0  # added to the decision value: 0 is best\n=======\nBIAS = 0.0\n"
            ">>>>>>> REPLACE\n")
    train, changed, description, _ = parse_reply_files(f"Description: no bias\n`model.py`\n{edit}", TRAIN_M, files)
    assert train == TRAIN_M and changed == {"model.py": MODEL.replace(
        "BIAS = 2.0  # added to the decision value: 0 is best", "BIAS = 0.0")} and description == "no bias"
    with pytest.raises(ReplyError, match="evaluate.py, which is not an editable file"):
        parse_reply_files(f"Description: x\nevaluate.py\n{edit}", TRAIN_M, files)
    with pytest.raises(ReplyError, match="not found in the current train.py"):  # no name: train.py's edit
        parse_reply_files(f"Description: x\n\n{edit}", TRAIN_M, files)
    gpt = "A = 1\n" * 5
    reply = "Description: a\nv0.5\n<<<<<<< SEARCH\n" + gpt + "=======\nA = 2\n>>>>>>> REPLACE\n"
    assert parse_reply(reply, gpt)[0] == "A = 2\n"  # a version number is prose, not a file's name
    prompt = build_prompt(Context(program="", train_py=TRAIN_M, harness_surface="", files=files, task="line"))
    assert MODEL.strip() in prompt and "Current model.py" in prompt and "train.py and the other editable" in prompt
    assert "model.py" not in build_prompt(Context(program="", train_py=TRAIN_M, harness_surface=""))


def test_search_names_another_files_constants_by_path_and_keeps_train_py_keys_as_they_were():
    import hashlib

    from autoresearch.agents.search import constants_of, setting_key
    from autoresearch.workspace import read_constants

    assert constants_of(TRAIN, {"model.py": MODEL, "notes.md": "X = 1\n"}) == {
        "BIAS": 0.0, "SCALE": 1.0, "model.py:BIAS": 2.0, "model.py:SCALE": 1.0}
    old = hashlib.sha1(repr(sorted((k, repr(v)) for k, v in read_constants(TRAIN).items())).encode()).hexdigest()[:16]
    assert setting_key(TRAIN) == setting_key(TRAIN, {}) == old  # an existing search.db's keys
    assert setting_key(TRAIN, {"model.py": MODEL}) != setting_key(TRAIN, {"model.py": GOOD_MODEL})


@pytest.mark.slow
def test_search_tunes_a_constant_of_model_py_and_the_keep_commits_it(ws):
    invoke("run", "--tag", "s", "--agent", "search", "--policy", "greedy", "--noise-runs", "0",
           "--max-experiments", "4")
    recs = records(ws, "s")
    assert [r.number for r in recs] == [1, 2, 3, 4]
    assert recs[0].files == {"model.py": MODEL} and recs[0].train_py == TRAIN_M
    for r in recs[1:]:
        assert r.train_py == TRAIN_M and r.files["model.py"] != MODEL, r.description  # model.py's constants move
        assert "b/model.py" in r.diff and ("BIAS" in r.description or "SCALE" in r.description)
        assert r.status in ("keep", "discard"), r.reason
    kept = [r for r in recs[1:] if r.status == "keep"]
    assert kept, [(r.description, r.val_bpb) for r in recs]
    tip = kept[-1]
    assert at(ws, tip.commit_sha, "model.py") == tip.files["model.py"] == at(ws, "autoresearch/s", "model.py")
    assert at(ws, "autoresearch/s", "train.py") == TRAIN_M
    assert tip.val_bpb > recs[0].val_bpb  # the task maximizes accuracy
    # What a tracker gets of each experiment: model.py's constants as params, by path, and model.py as an artifact
    from autoresearch.see.track.records import entries

    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        sent = {e.number: e for e in entries(journal.run("s"), journal.final_attempts("s"))}
    finally:
        journal.close()
    for r in recs:
        assert sent[r.number].artifacts["model.py"] == r.files["model.py"]
        assert sent[r.number].artifacts["train.py"] == TRAIN_M
        assert {"model.py:BIAS", "model.py:SCALE"} <= set(sent[r.number].params), sent[r.number].params
    # transfer sets a constant of model.py by path, in the baseline's and the best's own model.py
    r = CliRunner().invoke(cli, ["transfer", "--tag", "s", "--set", "model.py:NOPE=1", "--seeds", "1"])
    assert r.exit_code != 0 and "no constant model.py:NOPE" in r.output and "model.py:SCALE" in r.output, r.output
    r = CliRunner().invoke(cli, ["transfer", "--tag", "s", "--set", "notes.md:X=1", "--seeds", "1"])
    assert r.exit_code != 0 and "PATH:NAME" in r.output, r.output
    invoke("transfer", "--tag", "s", "--set", "model.py:SCALE=3.0", "--seeds", "1")
    ran = {d.name.split("-s")[0]: (d / "work" / "model.py").read_text()
           for d in (ws / ".autoresearch" / "runs" / "s").glob("transfer-*/*-s*")}
    assert ran == {"baseline": MODEL.replace("SCALE = 1.0", "SCALE = 3.0"),
                   "best": set_constants(tip.files["model.py"], {"SCALE": 3.0})}, ran


@pytest.mark.slow
def test_a_scripted_llm_edits_model_py_by_name_and_it_is_kept(ws, fake_llm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    fake_llm.push(Reply("The bias hurts.\nDescription: no bias\n\nmodel.py\n<<<<<<< SEARCH\nBIAS = 2.0  # added "
                        "to the decision value: 0 is best\n=======\nBIAS = 0.0  # added to the decision value: 0 is "
                        "best\n>>>>>>> REPLACE\n"))
    invoke("run", "--tag", "l", "--agent", "anthropic:test-model", "--base-url", fake_llm.url, "--policy",
           "greedy", "--noise-runs", "0", "--max-experiments", "2")
    prompt = json.dumps(fake_llm.requests[0].body)
    assert "model.py" in prompt and json.dumps(MODEL)[1:-1] in prompt  # the whole file is in the prompt
    got = rows(ws)
    assert [(r["description"], r["status"]) for r in got] == [("baseline", "keep"), ("no bias", "keep")]
    assert float(got[1]["accuracy"]) > float(got[0]["accuracy"])
    assert at(ws, "autoresearch/l", "model.py") == GOOD_MODEL and at(ws, "autoresearch/l", "train.py") == TRAIN_M
    rec = records(ws, "l")[1]
    assert rec.files == {"model.py": GOOD_MODEL} and "-BIAS = 2.0" in rec.diff and "+BIAS = 0.0" in rec.diff


@pytest.mark.slow
def test_a_command_agent_changes_model_py_and_one_that_changes_the_evaluator_is_refused(ws, tmp_path):
    agent = scripted_agent(tmp_path, [("no bias", {"model.py": GOOD_MODEL}),
                                      ("a kinder evaluator", {"evaluate.py": "print('{\"accuracy\": 1.0}')\n"})])
    invoke("run", "--tag", "c", "--agent", agent, "--no-agent-sandbox", "--policy", "greedy", "--noise-runs", "0",
           "--fix-attempts", "0", "--max-experiments", "4")
    got = rows(ws)
    assert [(r["description"], r["status"]) for r in got][:3] == [
        ("baseline", "keep"), ("no bias", "keep"), ("a kinder evaluator", "crash")]
    assert float(got[1]["accuracy"]) > float(got[0]["accuracy"])
    assert at(ws, "autoresearch/c", "model.py") == GOOD_MODEL
    recs = records(ws, "c")
    assert recs[2].status == "rejected" and "fixed file(s) evaluate.py" in recs[2].reason
    assert "evaluate.py" not in recs[2].files
    shown = (tmp_path / "prompts" / "4.txt").read_text()  # the next prompt: the refusal, with its reason
    assert "fixed file(s) evaluate.py" in shown and "model.py" in shown
    first = (tmp_path / "prompts" / "2.txt").read_text()
    assert MODEL in first and "model.py" in first  # the command agent is told the files it may change
    assert "print('{" not in at(ws, "autoresearch/c", "evaluate.py")
    out = invoke("ablate", "--seeds", "1").output  # taking the kept change out of model.py is measured
    assert "no bias" in out and "helps" in out, out


@pytest.mark.slow
def test_a_resume_after_a_keep_of_model_py_continues_from_the_kept_files(ws, tmp_path):
    tweak = TRAIN_M.replace("print(\"accuracy", "# a comment\nprint(\"accuracy")
    agent = scripted_agent(tmp_path, [("no bias", {"model.py": GOOD_MODEL}), ("a comment", {"train.py": tweak})])
    invoke("run", "--tag", "r", "--agent", agent, "--no-agent-sandbox", "--policy", "greedy", "--noise-runs", "0",
           "--max-experiments", "2")
    assert at(ws, "autoresearch/r", "model.py") == GOOD_MODEL
    invoke("run", "--resume", "--tag", "r", "--max-experiments", "3")
    recs = records(ws, "r")
    assert [r.number for r in recs] == [1, 2, 3]
    third = recs[2]
    assert third.parent_commit == recs[1].commit_sha and third.files == {"model.py": GOOD_MODEL}
    assert third.train_py == tweak and "model.py" not in third.diff  # its change is train.py's alone
    assert third.val_bpb == recs[1].val_bpb  # it ran with the kept model.py (the old one scores lower)
    assert GOOD_MODEL in (tmp_path / "prompts" / "3.txt").read_text()
    assert (ws / "model.py").read_text() == GOOD_MODEL and os.path.exists(ws / "results.tsv")


@pytest.mark.slow
def test_two_workers_merge_model_py_changes_and_every_keep_is_what_was_measured(ws):
    invoke("run", "--tag", "w", "--agent", "search", "--policy", "greedy", "--noise-runs", "0", "--workers", "2",
           "--max-experiments", "7")
    recs = records(ws, "w")
    assert len(recs) == 7 and {r.worker for r in recs if r.number > 1} == {1, 2}
    for r in recs:
        if r.status == "keep":  # the commit holds exactly the files the journal says were measured
            assert at(ws, r.commit_sha, "model.py") == r.files["model.py"]
            assert at(ws, r.commit_sha, "train.py") == r.train_py == TRAIN_M
    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        best = journal.best("w")  # the last keep decided (workers may decide a later number first)
    finally:
        journal.close()
    assert best is not None and at(ws, "autoresearch/w", "model.py") == best.files["model.py"]


KILL_AFTER_COMMIT = """\
import os, signal, sys
from autoresearch import vcs
commit = vcs.commit_file
def commit_then_die(*a, **k):  # experiment 2 is committed in its worker's checkout; the journal does not know
    commit(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
vcs.commit_file = commit_then_die
from autoresearch.cli import main
sys.argv = ["autoresearch", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_a_resume_after_kill_9_runs_the_recorded_model_py_change_again(ws, tmp_path):
    agent = scripted_agent(tmp_path, [("no bias", {"model.py": GOOD_MODEL})])
    (tmp_path / "wrapper.py").write_text(KILL_AFTER_COMMIT)
    proc = subprocess.run([sys.executable, str(tmp_path / "wrapper.py"), "run", "--tag", "k", "--agent", agent,
                           "--no-agent-sandbox", "--policy", "greedy", "--noise-runs", "0", "--max-experiments",
                           "2"], cwd=ws, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        pending = [r for r in journal.experiments("k") if r.state != "done"]
    finally:
        journal.close()
    assert [(r.number, r.files) for r in pending] == [(2, {"model.py": GOOD_MODEL})]
    invoke("run", "--resume", "--tag", "k")
    got = rows(ws)
    assert [(r["description"], r["status"]) for r in got] == [("baseline", "keep"), ("no bias", "keep")]
    assert at(ws, "autoresearch/k", "model.py") == GOOD_MODEL and (ws / "model.py").read_text() == GOOD_MODEL
    assert [p.name for p in (tmp_path / "prompts").iterdir()] == ["2.txt"]  # run again, not proposed again


@pytest.mark.slow
def test_an_editable_file_made_a_link_to_what_the_agent_may_not_read_is_refused(ws, tmp_path):
    """The proposer reads a command agent's files outside the agent's confinement: a link must not carry a hidden
    file (the labels) into a commit the experiment can read."""
    (tmp_path / "secret.txt").write_text("SECRET = 42\n")
    agent = tmp_path / "linker.py"
    agent.write_text(f"import os\nos.remove('model.py')\nos.symlink({str(tmp_path / 'secret.txt')!r}, 'model.py')\n"
                     "print('Description: a linked model')\n")
    invoke("run", "--tag", "x", "--agent", f"cmd:{sys.executable} {agent}", "--no-agent-sandbox", "--policy",
           "greedy", "--noise-runs", "0", "--fix-attempts", "0", "--max-experiments", "2")
    rec = records(ws, "x")[1]
    assert rec.status == "rejected" and "model.py a symbolic link" in rec.reason
    assert "SECRET" not in rec.files.get("model.py", "") and "SECRET" not in rec.diff
    assert at(ws, "autoresearch/x", "model.py") == MODEL


CLAIMING_AGENT = """\
import os, pathlib, sys
steps = {steps!r}
root = pathlib.Path({root!r})
for k, (description, files) in enumerate(steps):  # the first free step, whichever worker asks first
    try:
        os.close(os.open(root / f"claim{{k}}", os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        continue
else:
    sys.exit("no step left")
for name, text in files.items():
    pathlib.Path(name).write_text(text)
print("Description: " + description)
"""


@pytest.mark.slow
def test_a_train_py_change_that_beat_its_start_is_merged_with_a_newer_model_py_keep(ws, tmp_path):
    """Two workers: a slow change of train.py and a quick one of model.py start from the baseline; the quick one is
    kept first, the slow one beats it too, so the two are merged (each file on its own) and the combination runs:
    the branch ends with both files' changes, and the record says what ran."""
    slow = TRAIN_M.replace("import os\n", "import os, time\ntime.sleep(6)\n").replace("* SCALE + BIAS", "* SCALE")
    better_model = MODEL.replace("BIAS = 2.0", "BIAS = 1.5")
    agent = tmp_path / "claimer.py"
    agent.write_text(CLAIMING_AGENT.format(steps=[("no bias in train.py", {"train.py": slow}),
                                                  ("less bias", {"model.py": better_model})], root=str(tmp_path)))
    invoke("run", "--tag", "m", "--agent", f"cmd:{sys.executable} {agent}", "--no-agent-sandbox", "--policy",
           "greedy", "--noise-runs", "0", "--workers", "2", "--max-experiments", "3")
    recs = {r.description: r for r in records(ws, "m")}
    quick, merged = recs["less bias"], recs["no bias in train.py"]
    assert quick.status == "keep" and merged.status == "keep", [(r.description, r.status, r.reason) for r in
                                                                 recs.values()]
    assert "rebased" in merged.evidence and merged.parent_commit == quick.commit_sha
    assert (merged.train_py, merged.files) == (slow, {"model.py": better_model})  # the combination, as it ran
    assert "b/train.py" in merged.diff and "model.py" not in merged.diff  # its change on the newer best
    assert at(ws, "autoresearch/m", "train.py") == slow and at(ws, "autoresearch/m", "model.py") == better_model
