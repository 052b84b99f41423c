"""The command line: init, prepare and train from the user's side."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import TINY, git

from autoresearch.cli import cli
from autoresearch.harness.constants import load_meta, prepared_dir
from autoresearch.settings import PROFILES, Settings
from autoresearch.workspace import read_constants


def invoke(*args: str, **kw):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **kw)


def test_init_creates_a_committed_workspace(tmp_path):
    r = invoke("init", str(tmp_path / "ws"), "--profile", "cpu", "--time-budget", "42")
    assert r.exit_code == 0, r.output
    ws = tmp_path / "ws"
    assert {p.name for p in ws.iterdir()} >= {"train.py", "program.md", "autoresearch.toml", ".gitignore", ".git"}
    s = Settings.load(ws / "autoresearch.toml")
    assert (s.profile, s.time_budget, s.max_seq_len, s.vocab_size) == ("cpu", 42.0, 256, 2048)
    assert git(ws, "status", "--porcelain") == ""  # everything committed
    assert len(git(ws, "log", "--oneline").splitlines()) == 1
    ignored = (ws / ".gitignore").read_text()
    assert "results.tsv" in ignored and ".autoresearch/" in ignored
    constants = read_constants((ws / "train.py").read_text())
    for name, value in PROFILES["cpu"].train_constants.items():
        assert constants[name] == value


def test_init_refuses_an_existing_workspace_and_changes_nothing(tmp_path):
    ws = tmp_path / "ws"
    assert invoke("init", str(ws), "--profile", "cpu").exit_code == 0
    before = (ws / "train.py").read_text()
    r = CliRunner().invoke(cli, ["init", str(ws), "--profile", "cuda"])
    assert r.exit_code == 1 and "already a workspace" in r.output
    assert (ws / "train.py").read_text() == before
    other = tmp_path / "notempty"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    r = CliRunner().invoke(cli, ["init", str(other)])
    assert r.exit_code == 1 and "not empty" in r.output and (other / "keep.txt").read_text() == "mine"


def test_init_rejects_bad_settings_clearly(tmp_path):
    r = CliRunner().invoke(cli, ["init", str(tmp_path / "ws"), "--profile", "cpu", "--time-budget", "-1"])
    assert r.exit_code == 1 and "time_budget must be positive" in r.output
    assert not (tmp_path / "ws").exists()


def test_cuda_profile_template_is_the_originals_size(tmp_path):
    assert invoke("init", str(tmp_path / "ws"), "--profile", "cuda").exit_code == 0
    c = read_constants((tmp_path / "ws" / "train.py").read_text())
    assert (c["DEPTH"], c["ASPECT_RATIO"], c["HEAD_DIM"], c["TOTAL_BATCH_SIZE"]) == (8, 64, 128, 2**19)


def test_prepare_outside_a_workspace_needs_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["prepare"])
    assert r.exit_code == 1 and "autoresearch init" in r.output


def test_train_without_prepared_data_says_what_to_do(tmp_path, monkeypatch):
    invoke("init", str(tmp_path / "ws"), "--profile", "cpu")
    monkeypatch.chdir(tmp_path / "ws")
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "empty-cache"))
    r = CliRunner().invoke(cli, ["train"])
    assert r.exit_code == 1 and "autoresearch prepare" in r.output


@pytest.mark.slow
def test_train_end_to_end_on_cpu(tiny_workspace, tiny_cache):
    """The template trains on the tiny corpus: far better than an untrained model, never below the floor. On a
    token budget, so that how busy the machine is decides nothing."""
    toml = tiny_workspace / "autoresearch.toml"
    toml.write_text(toml.read_text().replace("token_budget = 0", "token_budget = 20480")  # 40 steps of 512 tokens
                    .replace("time_budget = 4.0", "time_budget = 30.0"))  # only a cap now: 10 x 30 s, for any load
    r = invoke("train")
    assert r.exit_code == 0, r.output
    assert "official (harness): val_bpb" in r.output
    lines = r.output.splitlines()
    summary = lines[lines.index("---") + 1 :]
    keys = [line.split(":")[0] for line in summary[:9]]
    assert keys == ["val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
                    "total_tokens_M", "num_steps", "num_params_M", "depth"]
    result = json.loads(next((tiny_workspace / ".autoresearch" / "train").glob("*/result.json")).read_text())
    assert result["status"] == "ok" and result["val_bpb"] == result["harness"]["val_bpb"]
    result = result["harness"]
    s = Settings(**TINY)
    untrained = math.log2(s.vocab_size) * result["val_tokens"] / result["val_bytes"]  # uniform prediction
    floor = load_meta(prepared_dir(s, tiny_cache))["eval"][f"T{s.max_seq_len}-E{s.eval_tokens}"]["val"]["floor_bpb"]
    assert floor < result["val_bpb"] < 0.8 * untrained
    assert result["test_bpb"] > floor


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "autoresearch", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "init" in out.stdout and "prepare" in out.stdout


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profiles_write_consistent_batch_sizes(profile):
    p = PROFILES[profile]
    c = p.train_constants
    assert c["TOTAL_BATCH_SIZE"] % (c["DEVICE_BATCH_SIZE"] * p.max_seq_len) == 0
    assert (c["DEPTH"] * c["ASPECT_RATIO"]) % c["HEAD_DIM"] == 0


def test_a_token_budget_workspace_speaks_of_tokens(tmp_path):
    """program.md and the agents' prompt say what the budget is: tokens where the workspace trains on tokens."""
    from autoresearch.agents.base import Context
    from autoresearch.agents.prompt import build_prompt

    r = CliRunner().invoke(cli, ["init", str(tmp_path / "tok"), "--profile", "cpu", "--token-budget", "163840"])
    assert r.exit_code == 0, r.output
    program = (tmp_path / "tok" / "program.md").read_text()
    assert "163,840 tokens" in program and "TOKEN_BUDGET" in program and "wall-clock" not in program, program
    r = CliRunner().invoke(cli, ["init", str(tmp_path / "time"), "--profile", "cpu", "--time-budget", "120"])
    program = (tmp_path / "time" / "program.md").read_text()
    assert "wall-clock" in program and "TOKEN_BUDGET" not in program and "{" not in program
    ctx = Context(program="", train_py="", harness_surface="", time_budget=45, token_budget=163840)
    prompt = build_prompt(ctx)
    assert "163,840 training tokens" in prompt and "wall-clock budget" not in prompt
    assert "wall-clock budget of 45 seconds" in build_prompt(Context(program="", train_py="", harness_surface="",
                                                                     time_budget=45))


@pytest.mark.slow
def test_train_prints_a_crashs_traceback_once(tiny_workspace):
    train = tiny_workspace / "train.py"
    train.write_text(train.read_text().replace("\nimport torch\n", "\nimport torch\nraise RuntimeError('mine')\n", 1))
    r = invoke("train")
    assert r.exit_code == 1
    assert r.output.count("Traceback (most recent call last)") == 1, r.output  # as it happened, not again after
    assert "Error: run crash: exit code 1: RuntimeError: mine" in r.output and "log: " in r.output
