"""Red team of multi-file proposals (issue 17): the clever agent that has read our source, through the paths a
task's other editable files take (Proposal.files as any agent or plugin may fill it, a command agent's checkout,
the commit, the merge of two workers, init's warnings about the evaluator).

Each test asserts the real outcome: what the proposer refuses and why, what the record would hold, what git holds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from taskkit import EVALUATE, TOML, TRAIN, make_task, scripted_agent
from test_task_files import MODEL, TRAIN_M, invoke, records

from autoresearch import vcs
from autoresearch.agents.base import Proposal
from autoresearch.loop.proposer import Proposer
from autoresearch.task.store import judge_dir, workspace_task
from autoresearch.task.warnings import evaluator_warnings

pytestmark = pytest.mark.timeout(300)

SECRET = "SECRET_LABELS = [0, 1, 1, 0]\n"
# model.py, any *_model.py (new ones too), and everything under models/ are the agent's
GLOBS = TOML.replace('editable = ["train.py"]', 'editable = ["train.py", "model.py", "*_model.py", "models"]')


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("redteam")
    task = make_task(tmp / "line", toml=GLOBS, train_py=TRAIN_M, model_py=MODEL, x_model_py="X = 1\n",
                     models__a_py="A = 1\n")
    ws = tmp / "ws"
    invoke("init", str(ws), "--task", str(task))
    return ws


@pytest.fixture
def checkout(ws):
    """The workspace as a worker's checkout, put back clean after each test."""
    yield ws
    vcs.detach_at(ws, vcs.head(ws))


def proposer(ws: Path) -> Proposer:
    p = Proposer.__new__(Proposer)  # gather and check need only the task (and the settings for the GPT task)
    p.ws, p.task, p.settings = ws, workspace_task(ws), None
    return p


def gather(ws: Path, files: dict[str, str], before: set[str] | None = None, train_py: str = TRAIN_M):
    before = set(vcs.status_porcelain(ws)) if before is None else before
    return proposer(ws).gather(Proposal(train_py=train_py, description="x", files=files), ws, before)


def test_the_tiny_task_declares_the_globs_the_attacks_use(ws):
    task = workspace_task(ws)
    assert task.editable_files(ws) == ["model.py", "models/a.py", "train.py", "x_model.py"]
    assert {"evaluate.py", "task.toml", "data/train_x.npy"} <= set(task.fixed_files(ws))
    assert not (ws / "data" / "val_y.npy").exists() and (judge_dir(ws) / "data" / "val_y.npy").exists()


@pytest.mark.parametrize("name", ["/tmp/x_model.py", "../ws/x_model.py", "models/../evaluate.py",
                                  "models/../../x_model.py"])
def test_a_named_file_outside_the_workspace_is_refused(checkout, name):
    files, why = gather(checkout, {name: "X = 2\n"})
    assert files == {} and "only paths inside the workspace" in why and name in why


@pytest.mark.parametrize("name", ["mоdel.py", "model.py ", " x_model.py.txt", "task.toml", "data/train_x.npy",
                                  "data/val_y.npy", "program.md", "models.py", "helpers.py"])
def test_a_fixed_or_hidden_file_under_another_spelling_is_refused_as_fixed(checkout, name):
    """A look-alike (Cyrillic о), a trailing space, a near name: none matches an editable glob."""
    files, why = gather(checkout, {name: "X = 2\n"})
    assert "fixed file(s)" in why and name in why


@pytest.mark.parametrize("name, canonical", [("./x_model.py", "x_model.py"), ("models//a.py", "models/a.py"),
                                             ("models/./a.py", "models/a.py"), ("./new_model.py", "new_model.py"),
                                             ("models/", "models"), ("./evaluate.py", "evaluate.py"),
                                             ("./data/val_y.npy", "data/val_y.npy")])
def test_a_second_spelling_of_an_editable_file_is_refused_with_its_one_name(checkout, name, canonical):
    """`./x_model.py` matches `*_model.py`: the record would hold it beside `x_model.py` (the best's text), the
    commit writes both to one path (the last in order wins: x_model.py, the old text), so what the journal says
    ran (the diff of ./x_model.py) is not what git holds and the run measured. One name per file."""
    files, why = gather(checkout, {name: "X = 2\n"})
    assert files == {} and f"give it as {canonical}" in why, why


@pytest.mark.parametrize("name", ["x\0_model.py", "x\n_model.py", "models/a\tb.py", "x\u200b_model.py",
                                  "evaluate.py\u200b"])
def test_a_name_with_a_control_character_is_refused(checkout, name):
    """fnmatch's `*` matches a newline; a NUL would make the commit's write raise in the orchestrator; a zero-width
    space makes a name that looks like another."""
    files, why = gather(checkout, {name: "X = 2\n"})
    assert files == {} and "control character" in why, why


@pytest.mark.parametrize("name, what", [("models", "a directory"), ("model.py/x.py", "model.py is a file")])
def test_a_name_that_cannot_be_a_file_is_refused_before_it_reaches_the_commit(checkout, name, what):
    """`models` (a directory glob) is editable, and so is `model.py/x.py` (matches() covers a glob's subtree):
    writing either in the worker's checkout raises (IsADirectoryError, NotADirectoryError) in the orchestrator,
    after the journal has the record: the run stops, and its resume meets the same record again."""
    files, why = gather(checkout, {name: "X = 2\n"})
    assert why and what in why, why


def test_a_new_file_that_an_editable_glob_matches_is_the_agents(checkout):
    files, why = gather(checkout, {"helper_model.py": "H = 1\n", "models/sub/b.py": "B = 2\n"})
    assert why == "" and files == {"helper_model.py": "H = 1\n", "models/sub/b.py": "B = 2\n"}


def test_a_new_file_no_editable_glob_matches_is_refused_as_fixed(checkout):
    (checkout / "helpers.py").write_text("H = 1\n")  # as a command agent leaves it: found by git status
    files, why = gather(checkout, {}, before=set())
    assert "fixed file(s) helpers.py" in why


def test_a_new_editable_file_that_is_not_utf8_is_refused(checkout):
    before = set(vcs.status_porcelain(checkout))
    (checkout / "bin_model.py").write_bytes(b"X = '\xff\xfe'\n")
    files, why = gather(checkout, {}, before=before)
    assert "bin_model.py unreadable as text" in why


def test_a_link_to_a_hidden_file_hidden_behind_an_earlier_refusal_does_not_carry_its_text(checkout, tmp_path):
    """The command agent reads model.py through the link (Proposal.files holds the secret); deleting a fixed file
    too made gather return on the deletion, before its check for links, with the secret in the files it returns:
    the record (and its diff, which the next prompt shows) would hold it."""
    (tmp_path / "secret.txt").write_text(SECRET)
    before = set(vcs.status_porcelain(checkout))
    (checkout / "model.py").unlink()
    os.symlink(tmp_path / "secret.txt", checkout / "model.py")
    (checkout / "program.md").unlink()  # sorts before model.py's entry
    files, why = gather(checkout, {"model.py": SECRET}, before=before)
    assert "a symbolic link" in why and all("SECRET" not in t for t in files.values()), (files, why)


def test_a_directory_made_a_link_outside_does_not_carry_its_text(checkout, tmp_path):
    """models/ replaced by a link to a directory the agent may not read: models/a.py is no link itself, and the
    link (git's `?? models`) reads as a deleted file; neither may bring the outside text into the record."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.py").write_text(SECRET)
    before = set(vcs.status_porcelain(checkout))
    import shutil

    shutil.rmtree(checkout / "models")
    os.symlink(outside, checkout / "models")
    files, why = gather(checkout, {"models/a.py": SECRET}, before=before)
    assert "a symbolic link" in why and all("SECRET" not in t for t in files.values()), (files, why)


def test_a_hard_link_to_a_fixed_file_is_its_own_copy_in_the_commit(checkout, tmp_path):
    """A hard link is a plain file the agent could read anyway; the commit holds its text, and the fixed file in
    the judge (what the evaluator reads) is untouched."""
    before = set(vcs.status_porcelain(checkout))
    (checkout / "x_model.py").unlink()
    os.link(checkout / "program.md", checkout / "x_model.py")
    files, why = gather(checkout, {}, before=before)
    assert why == "" and files == {"x_model.py": (checkout / "program.md").read_text()}
    assert (judge_dir(checkout) / "evaluate.py").read_text() == EVALUATE


def test_a_huge_editable_file_is_refused(checkout):
    files, why = gather(checkout, {"models/big.txt": "x" * (64 << 20)})
    assert "models/big.txt is 64.0 MiB" in why and "at most 1 MiB" in why and files == {}
    files, why = gather(checkout, {"models/big.txt": "x" * (1 << 19)})  # half a MiB: a large config is fine
    assert why == "", why


def test_check_parses_every_changed_python_file_and_names_the_one_that_does_not_parse(ws):
    p = proposer(ws)
    why = p.check(Proposal(train_py=TRAIN_M, description="d", files={"x_model.py": "def (:\n"}), TRAIN_M,
                  {"x_model.py": "X = 1\n"}, {"x_model.py": "def (:\n"})
    assert why.startswith("x_model.py does not parse")
    why = p.check(Proposal(train_py=TRAIN_M, description="d"), TRAIN_M, {}, {"x_model.py": "import requests\n"})
    assert "x_model.py: line 1: `import requests` is not allowed" in why


def test_an_evaluator_that_imports_an_editable_module_is_warned_about(tmp_path):
    evaluate = "import model\nfrom models import a\n" + EVALUATE
    task = make_task(tmp_path / "line", toml=GLOBS, train_py=TRAIN, model_py=MODEL, x_model_py="X = 1\n",
                     models__a_py="A = 1\n", evaluate_py=evaluate)
    from autoresearch.task.declaration import load_task

    found = evaluator_warnings(load_task(task), task, load_task(task).editable_files())
    assert any("imports model, an editable file" in w for w in found), found
    assert any("imports models.a, an editable file" in w for w in found), found


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    task = make_task(tmp_path / "line", toml=GLOBS, train_py=TRAIN_M, model_py=MODEL, x_model_py="X = 1\n",
                     models__a_py="A = 1\n")
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--task", str(task))
    monkeypatch.chdir(ws)
    return ws


@pytest.mark.slow
def test_a_file_left_in_the_main_workspace_that_no_commit_holds_does_not_run(fresh, tmp_path):
    """A command agent's checkout is .worktrees/<tag>/w<k> inside the workspace, which its confinement leaves
    writable. It writes helper_model.py (an editable glob matches it) into the workspace itself, and a train.py
    that imports it into its checkout: the commit holds train.py only. The runner took every editable file the
    commit does not hold from the workspace's own tree, so the run imported a file that no commit, record or diff
    holds (and that every later run would import too)."""
    helper = "BIAS_FIX = 0.0\n"
    uses = TRAIN_M.replace("from model import BIAS, SCALE\n", "from model import BIAS, SCALE\n"
                           "BIAS_FIX = __import__('helper_model').BIAS_FIX\n")  # the import check reads statements
    agent = scripted_agent(tmp_path, [("a helper", {"train.py": uses, "../../../helper_model.py": helper})])
    invoke("run", "--tag", "h", "--agent", agent, "--no-agent-sandbox", "--policy", "greedy", "--noise-runs", "0",
           "--fix-attempts", "0", "--max-experiments", "2")
    assert (fresh / "helper_model.py").read_text() == helper  # the agent did write it there
    rec = records(fresh, "h")[1]
    assert rec.commit_sha, (rec.status, rec.reason)
    assert "helper_model.py" not in rec.files and "helper_model" not in vcs.git(fresh, "ls-tree", "-r",
                                                                                 "--name-only", rec.commit_sha)
    assert rec.status == "crash" and "helper_model" in (rec.reason + (rec.error_tail or "")), (rec.status,
                                                                                              rec.reason)


@pytest.mark.parametrize("name", ["models/__pycache__/a.py", "models/run.log", "models/results.tsv",
                                  "models/.autoresearch/a.py", "models/.worktrees/a.py"])
def test_a_name_git_ignores_is_refused_before_the_commit_fails(checkout, name):
    """An editable glob (`models`) matches it, but .gitignore lists it: `git add` refuses it in the orchestrator,
    after the journal has the record, and the resume meets the same record again."""
    files, why = gather(checkout, {name: "X = 2\n"})
    assert files == {} and "git ignores" in why and name in why, why
    assert "git ignores" not in gather(checkout, {"models/b.py": "B = 1\n"})[1]


@pytest.mark.parametrize("name", ["models/.git/config", "models/.git", ".git/config"])
def test_a_name_inside_a_git_directory_is_refused(checkout, name):
    files, why = gather(checkout, {name: "[core]\n"})
    assert files == {} and why, why
    assert not (checkout / "models" / ".git").exists()


def test_a_new_editable_module_may_be_imported_by_train_py(ws):
    """A new file an editable glob matches is the agent's code: train.py may import it (only what the task allows
    and the best imports could be, so a helper module was refused as a disallowed import)."""
    uses = TRAIN_M.replace("from model import BIAS, SCALE\n", "from model import BIAS, SCALE\nfrom helper_model "
                           "import FIX\nimport models.b\n")
    files = {"helper_model.py": "FIX = 0.0\n", "models/b.py": "B = 1\n"}
    why = proposer(ws).check(Proposal(train_py=uses, description="d", files=files), TRAIN_M,
                             {"model.py": MODEL}, files)
    assert why == "", why
    why = proposer(ws).check(Proposal(train_py=uses, description="d"), TRAIN_M, {"model.py": MODEL}, {})
    assert "`import helper_model` is not allowed" in why  # a module no editable file is


@pytest.mark.slow
def test_a_conflicting_keep_on_a_newer_best_commits_exactly_the_files_it_ran_with(fresh, tmp_path):
    """Two workers from the baseline: a quick change sets model.py's BIAS and adds helper_model.py, and is kept;
    a slow one sets BIAS otherwise (a conflict) and beats the newer best too, so the files it ran with are
    committed on top of it. That commit kept the newer best's helper_model.py, which the run never had: the keep
    was not what was measured, and the record's files were not the commit's."""
    from test_task_files import CLAIMING_AGENT

    slow = MODEL.replace("BIAS = 2.0", "import time\ntime.sleep(6)\nBIAS = 0.0")
    quick = {"model.py": MODEL.replace("BIAS = 2.0", "BIAS = 1.5"), "helper_model.py": "H = 1\n"}
    agent = tmp_path / "claimer.py"
    agent.write_text(CLAIMING_AGENT.format(steps=[("no bias, slowly", {"model.py": slow}), ("less bias", quick)],
                                           root=str(tmp_path)))
    invoke("run", "--tag", "m", "--agent", f"cmd:{sys.executable} {agent}", "--no-agent-sandbox", "--policy",
           "greedy", "--noise-runs", "0", "--workers", "2", "--max-experiments", "3")
    recs = {r.description: r for r in records(fresh, "m")}
    first, late = recs["less bias"], recs["no bias, slowly"]
    assert first.status == "keep" and late.status == "keep", [(r.description, r.status, r.reason)
                                                               for r in recs.values()]
    assert late.parent_commit == first.commit_sha and "conflict" in late.evidence.get("rebase", "")
    tree = vcs.git(fresh, "ls-tree", "-r", "--name-only", late.commit_sha).split()
    held = {n: vcs.show(fresh, late.commit_sha, n) for n in tree if n not in ("train.py",)
            and workspace_task(fresh).is_editable(n)}
    assert held == late.files and "helper_model.py" not in tree


@pytest.mark.parametrize("dir_link", [False, True])
def test_a_failed_command_agent_round_restores_no_file_through_a_link_it_made(checkout, tmp_path, dir_link):
    """After a failed round the command agent's runner puts the editable files back, unconfined. The agent made
    model.py (or models/, a directory) a link to a file it may not even see, and failed: the original text was
    written through the link, over whatever it named (the judge's evaluator, the journal, a user's file)."""
    from autoresearch.agents.base import AgentError, Context
    from autoresearch.agents.command import make_command_agent

    target = tmp_path / "victim"
    target.mkdir()
    (target / "a.py").write_text("precious\n")
    (target / "model.py").write_text("precious\n")
    link = "import os, shutil\n" + (f"shutil.rmtree('models')\nos.symlink({str(target)!r}, 'models')\n" if dir_link
                                    else f"os.remove('model.py')\nos.symlink({str(target / 'model.py')!r}, "
                                         "'model.py')\n")
    script = tmp_path / "linker.py"
    script.write_text(link + "raise SystemExit(1)\n")
    agent = make_command_agent(f"cmd:{sys.executable} {script}", confine=False, timeout=60)
    files = {"model.py": MODEL, "models/a.py": "A = 1\n", "x_model.py": "X = 1\n"}
    ctx = Context(program="", train_py=TRAIN_M, harness_surface="", files=files, task="line", workspace=checkout,
                  experiment=2)
    with pytest.raises(AgentError, match="exited with code 1"):
        agent.propose(ctx)
    assert (target / "model.py").read_text() == "precious\n" and (target / "a.py").read_text() == "precious\n"
    if not dir_link:  # the link itself is gone, the file put back
        assert not (checkout / "model.py").is_symlink() and (checkout / "model.py").read_text() == MODEL


def test_an_evaluator_that_imports_a_module_only_an_editable_glob_would_match_is_warned_about(tmp_path):
    """No helper_model.py exists at init, but `*_model.py` hands the agent any such file: an evaluator that
    imports helper_model imports the agent's code as soon as one is written."""
    from autoresearch.task.declaration import load_task

    evaluate = "import helper_model\nimport models.sub.c\n" + EVALUATE
    task = make_task(tmp_path / "line", toml=GLOBS, train_py=TRAIN, model_py=MODEL, x_model_py="X = 1\n",
                     models__a_py="A = 1\n", evaluate_py=evaluate)
    t = load_task(task)
    found = evaluator_warnings(t, task, t.editable_files())
    assert any("imports helper_model, an editable file" in w for w in found), found
    assert any("imports models.sub.c, an editable file" in w for w in found), found
    assert not any("numpy" in w for w in found), found


def test_an_evaluator_importing_an_installed_module_that_a_broad_glob_would_match_is_not_warned_about(tmp_path):
    from autoresearch.task.declaration import load_task

    toml = GLOBS.replace('"models"]', '"models", "[jn]*.py"]')
    task = make_task(tmp_path / "line", toml=toml, train_py=TRAIN, model_py=MODEL, x_model_py="X = 1\n",
                     models__a_py="A = 1\n", j_py="J = 1\n", evaluate_py="import json\n" + EVALUATE)
    t = load_task(task)
    assert evaluator_warnings(t, task, t.editable_files()) == []


def test_a_rename_the_agent_staged_is_a_deletion_named_rightly(checkout):
    """`git mv` in its checkout: status -z gives the rename's original path as a field of its own, which was read
    as an entry (its first three characters cut: 'the agent deleted odel.py')."""
    before = set(vcs.status_porcelain(checkout))
    vcs.git(checkout, "mv", "x_model.py", "y_model.py")
    files, why = gather(checkout, {}, before=before)
    assert why == "the agent deleted x_model.py: a proposal may change files, not delete them", why


@pytest.mark.parametrize("name", ["a" * 300 + "_model.py", "models/" + "d/" * 1500 + "a.py"])
def test_a_name_too_long_for_the_filesystem_is_refused_before_the_commit_fails(checkout, name):
    files, why = gather(checkout, {name: "X = 2\n"})
    assert files == {} and "too long" in why, why[:300]


def test_an_editable_file_that_is_not_utf8_text_is_refused_by_the_declaration(tmp_path):
    """Every editable file is text the agent rewrites whole (the prompt, the journal, git show of a commit): a
    binary one under a directory glob (weights) made the loop's first read of the commit's files raise."""
    from autoresearch.task.declaration import TaskError, load_task

    task = make_task(tmp_path / "line", toml=GLOBS, train_py=TRAIN_M, model_py=MODEL, x_model_py="X = 1\n",
                     models__a_py="A = 1\n")
    (task / "models" / "w.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\xfe")
    with pytest.raises(TaskError, match=r"editable: models/w\.npy is not UTF-8 text"):
        load_task(task)


def test_a_command_agents_new_file_with_a_control_character_in_its_name_is_refused(checkout):
    before = set(vcs.status_porcelain(checkout))
    (checkout / "x\u200b_model.py").write_text("X = 3\n")  # looks like x_model.py, which the best has
    files, why = gather(checkout, {}, before=before)
    assert files == {} and "control character" in why, why


HOOKER = """\
import pathlib, subprocess
common = pathlib.Path(subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                     capture_output=True, text=True, check=True).stdout.strip())
hook = common / "hooks" / "post-checkout"  # the workspace's .git, shared by every worktree
try:  # read-only to a confined agent (agents/command.py); our git runs no hook either way (vcs.NO_HOOKS)
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\\ncp {labels} {stolen}\\n")
    hook.chmod(0o755)
except OSError as e:
    print("refused:", e)
try:
    open({labels!r}, "rb")
    print("the agent read the labels itself")
except OSError:
    pass
pathlib.Path("x_model.py").write_text("X = 5\\n")
print("Description: a hook")
"""


def confined_round(ws: Path, tmp_path: Path, attack: str, tree: Path):
    """One round of a confined command agent running `attack` (formatted with the judge's labels and where a
    stolen copy would go) in a worker's checkout `tree` of `ws`. -> (its proposal, the stolen copy's path)."""
    from autoresearch.agents.base import Context
    from autoresearch.agents.command import make_command_agent

    labels, stolen = judge_dir(ws) / "data" / "val_y.npy", tmp_path / "stolen.npy"
    script = tmp_path / "attack.py"
    script.write_text(attack.format(labels=str(labels), stolen=str(stolen)))
    agent = make_command_agent(f"cmd:{sys.executable} {script}", confine=True, timeout=60, cache=tmp_path / "cache")
    files = {"model.py": MODEL, "models/a.py": "A = 1\n", "x_model.py": "X = 1\n"}
    proposal = agent.propose(Context(program="", train_py=TRAIN_M, harness_surface="", files=files, task="line",
                                     workspace=tree, experiment=2))
    return proposal, stolen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="agents are confined with namespaces on Linux")
def test_a_confined_agent_cannot_have_the_orchestrators_git_run_a_hook_it_wrote(ws, tmp_path):
    """The confined agent cannot read the judge's labels, but it can write the workspace's .git (its worktree's
    common directory): a post-checkout hook there ran, unconfined, at the loop's next `git checkout` of a worker's
    checkout, and copied the labels out."""
    tree = ws / ".worktrees" / "redteam" / "w0"
    vcs.add_worktree(ws, tree, vcs.head(ws))
    hook = ws / ".git" / "hooks" / "post-checkout"
    try:
        proposal, stolen = confined_round(ws, tmp_path, HOOKER, tree)
        assert proposal.files == {"x_model.py": "X = 5\n"} and not hook.exists()
        assert "read the labels" not in proposal.rationale  # they are out of its sight
        vcs.detach_at(tree, vcs.head(ws))  # what the loop does next with the checkout
        assert not stolen.exists()
    finally:
        hook.unlink(missing_ok=True)
        vcs.remove_worktree(ws, tree)


FILTERER = """\
import pathlib, subprocess
common = pathlib.Path(subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                     capture_output=True, text=True, check=True).stdout.strip())
subprocess.run(["git", "config", "filter.x.smudge", "cp {labels} {stolen}; cat"])  # each may fail: try all
try:
    (common / "info").mkdir(exist_ok=True)
    (common / "info" / "attributes").write_text("*.py filter=x\\n")
except OSError as e:
    print("refused:", e)
pathlib.Path("x_model.py").write_text("X = 5\\n")
print("Description: a filter")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="agents are confined with namespaces on Linux")
def test_a_confined_agent_cannot_have_the_orchestrators_git_run_a_filter_it_configured(ws, tmp_path):
    tree = ws / ".worktrees" / "redteam" / "w1"
    vcs.add_worktree(ws, tree, vcs.head(ws))
    try:
        _, stolen = confined_round(ws, tmp_path, FILTERER, tree)
        vcs.detach_at(tree, vcs.head(ws))  # what the loop does next with the checkout
        assert not stolen.exists()
        assert vcs.git(ws, "config", "--get", "filter.x.smudge", check=False) == ""  # .git was read-only to it
    finally:
        vcs.git(ws, "config", "--unset", "filter.x.smudge", check=False)
        (ws / ".git" / "info" / "attributes").unlink(missing_ok=True)
        vcs.remove_worktree(ws, tree)


GLOBAL = """\
import os, pathlib
# The orchestrator's git reads the user's global config: an fsmonitor command there runs at its next `git status`.
home = pathlib.Path(os.environ["HOME"])
(home / "monitor.sh").write_text("#!/bin/sh\\ncp {labels} {stolen}\\n")
(home / "monitor.sh").chmod(0o755)
(home / ".gitconfig").write_text(f"[core]\\n\\tfsmonitor = {{home / 'monitor.sh'}}\\n")
pathlib.Path("x_model.py").write_text("X = 5\\n")
print("Description: a global config")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="agents are confined with namespaces on Linux")
def test_a_confined_agent_cannot_have_the_orchestrators_git_run_a_command_from_the_users_global_config(
        ws, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the agent writes the user's home: its confinement leaves it writable
    tree = ws / ".worktrees" / "redteam" / "w2"
    vcs.add_worktree(ws, tree, vcs.head(ws))
    try:
        _, stolen = confined_round(ws, tmp_path, GLOBAL, tree)
        assert "fsmonitor" in (home / ".gitconfig").read_text()  # the agent could write it
        vcs.status_porcelain(tree)  # what the proposer does next with the checkout
        vcs.detach_at(tree, vcs.head(ws))
        assert not stolen.exists()
    finally:
        vcs.remove_worktree(ws, tree)


def test_our_git_runs_no_hook_and_no_fsmonitor_whatever_the_repository_says(ws, tmp_path):
    """Behind the read-only .git, the second layer: a hook or an fsmonitor command in the workspace's own config
    (written there by anyone) does not run in our git."""
    ran = tmp_path / "ran"
    hook = ws / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {ran}\n")
    hook.chmod(0o755)
    monitor = tmp_path / "monitor.sh"
    monitor.write_text(f"#!/bin/sh\ntouch {ran}\n")
    monitor.chmod(0o755)
    vcs.git(ws, "config", "core.fsmonitor", str(monitor))
    try:
        vcs.status_porcelain(ws)
        vcs.detach_at(ws, vcs.head(ws))
        assert not ran.exists()
    finally:
        hook.unlink()
        vcs.git(ws, "config", "--unset", "core.fsmonitor")
