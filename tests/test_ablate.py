"""`autoresearch ablate` and `autoresearch transfer` on a real (tiny) run: what each kept change is worth, and
whether the gain holds at another setting."""

from __future__ import annotations

import re
from dataclasses import asdict

import pytest
from click.testing import CliRunner
from conftest import TINY
from loopkit import ScriptedAgent, fast_source

from autoresearch import vcs
from autoresearch.cli import cli
from autoresearch.loop.core import Limits, Loop, LoopConfig
from autoresearch.loop.journal import Journal
from autoresearch.loop.measure import Difference, Stats, StudyError, margin, pooled_std
from autoresearch.loop.transfer import Transfer, parse_sets
from autoresearch.see.report import write_report
from autoresearch.see.studies import transfer_lines
from autoresearch.settings import Settings
from autoresearch.workspace import init_workspace, set_constants

# The fast stand-in, with the sharpness the model uses on a line of its own, far from QUALITY's: a later change
# can fix it (then QUALITY no longer matters) without touching the lines an earlier change rewrote.
BASE = (fast_source(NOISE=0.05)
        .replace("logp = torch.log(counts / counts.sum())\n",
                 "logp = torch.log(counts / counts.sum())\nSHARPNESS = QUALITY  # what the model uses\n")
        .replace("QUALITY * logp", "SHARPNESS * logp"))
SHARPER = set_constants(BASE, {"QUALITY": 0.6})  # #2: #3 sets its constant again, so nothing of it is left
SHARPER_STILL = set_constants(BASE, {"QUALITY": 0.7})  # #3: made redundant by #4, so worth nothing
FIXED = set_constants(BASE, {"QUALITY": 0.7, "SHARPNESS": 0.9})  # #4: the one that helps


@pytest.fixture(scope="module")
def studied(tmp_path_factory, tiny_cache):
    """A finished greedy run: baseline, then three keeps (#2 is no longer in the best, #3 is worth nothing, #4
    helps)."""
    from autoresearch.harness import constants

    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("home")
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        mp.setenv("AUTORESEARCH_CACHE", str(tiny_cache))
        ws = init_workspace(tmp_path_factory.mktemp("ablate") / "ws", Settings(**TINY))
        (ws / "train.py").write_text(BASE)
        vcs.commit_all(ws, "the stand-in with its sharpness on a line of its own")
        mp.chdir(ws)
        constants.workspace_settings.cache_clear()
        agent = ScriptedAgent([(SHARPER, "sharper"), (SHARPER_STILL, "sharper still"), (FIXED, "fix the sharpness")])
        loop = Loop(ws, Settings.load(ws / "autoresearch.toml"), agent,
                    LoopConfig(tag="t", policy="greedy", limits=Limits(max_experiments=4)))
        loop.start()
        loop.run_until_limit()
        assert [e.status for e in loop.journal.final_attempts("t")] == ["keep"] * 4
        loop.journal.close()
        yield ws


def invoke(ws, tiny_cache, monkeypatch, *args):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tiny_cache))
    return CliRunner().invoke(cli, [*args, "--workspace", str(ws)])


@pytest.mark.slow
def test_ablate_flags_the_redundant_change_skips_the_superseded_one_and_the_report_shows_the_worth(
        studied, tiny_cache, monkeypatch, tmp_path):
    head, tsv = vcs.head(studied), (studied / "results.tsv").read_text()
    r = invoke(studied, tiny_cache, monkeypatch, "ablate", "--seeds", "2", "--workers", "2")
    assert r.exit_code == 0, r.output
    rows = {int(m[1]): m[2] for m in re.finditer(r"^#(\d) .*?  (helps|worth nothing|hurts|not measured.*)$",
                                                 r.output, re.M)}
    assert rows == {2: "not measured: no longer in the best", 3: "worth nothing", 4: "helps"}, r.output
    assert "#3 set QUALITY again (0.6 -> 0.7)" in r.output
    # The branch of record and results.tsv are as the run left them.
    assert vcs.head(studied) == head and (studied / "results.tsv").read_text() == tsv
    assert vcs.status_porcelain(studied) == []

    j = Journal(studied / ".autoresearch" / "journal.db")
    study = j.studies("t", "ablate")[-1]
    got = j.measurements(study.id)
    j.close()
    assert study.state == "done" and study.best_number == 4
    assert sorted((m.variant, m.seed) for m in got) == [(v, k) for v in ("best", "without #3", "without #4")
                                                        for k in (0, 1)]
    assert all(m.status == "ok" and m.test_bpb is not None for m in got)
    by = {(m.variant, m.seed): m for m in got}
    assert by["without #3", 0].test_bpb == by["best", 0].test_bpb  # QUALITY no longer matters in the best
    assert by["without #4", 0].test_bpb > by["best", 0].test_bpb
    assert by["best", 0].test_bpb != by["best", 1].test_bpb  # the seeds differ: the margin is the noise's
    assert all((studied / ".autoresearch" / "runs" / "t" / f"ablate-{study.id}" / f"{s}-s{k}").is_dir()
               for s in ("best", "without-3", "without-4") for k in (0, 1))

    page = write_report(studied, out=tmp_path / "report").html.read_text()
    kept = {n: page[page.index(f'id="kept-{n}"'):] for n in (2, 3, 4)}
    assert "not measured: no longer in the best" in kept[2].split("</details>")[0]
    assert 'class="badge worthless"' in kept[3].split("</details>")[0]
    assert 'data-verdict="helps"' in kept[4].split("</details>")[0]
    assert 'class="badge worthless"' not in kept[4].split("</details>")[0]
    assert "measured worth (ablation of best #4, 2 seed(s))" in page


@pytest.mark.slow
def test_transfer_says_whether_the_gain_holds_at_another_setting(studied, tiny_cache, monkeypatch, tmp_path):
    head = vcs.head(studied)
    r = invoke(studied, tiny_cache, monkeypatch, "transfer", "--set", "QUALITY=0.2", "--time-budget", "3",
               "--seeds", "1")
    assert r.exit_code == 0, r.output
    assert "at QUALITY=0.2" in r.output and "3s per run" in r.output
    assert re.search(r"^gain .*\+0\.\d+ ± 0\.\d+\s*$", r.output, re.M), r.output
    assert "verdict: holds" in r.output and "the run's own gain, at its setting: +0." in r.output
    assert vcs.head(studied) == head

    j = Journal(studied / ".autoresearch" / "journal.db")
    study = j.studies("t", "transfer")[-1]
    j.close()
    assert study.plan["set"] == {"QUALITY": 0.2} and study.plan["time_budget"] == 3.0
    t = Transfer.from_dict(study.findings)
    assert t.verdict == "holds" and t.gain.test > 0 and t.baseline.test > t.best.test
    page = write_report(studied, out=tmp_path / "report").html.read_text()
    assert "Transfer to other settings" in page and "<code>QUALITY=0.2</code>" in page and "<b>holds</b>" in page


@pytest.mark.slow
def test_transfer_refuses_a_constant_train_py_lacks_and_names_the_ones_it_has(studied, tiny_cache, monkeypatch):
    r = invoke(studied, tiny_cache, monkeypatch, "transfer", "--set", "DEPTH=12")
    assert r.exit_code == 1
    assert "has no constant DEPTH" in r.output and "QUALITY" in r.output and "SEED" in r.output
    r = invoke(studied, tiny_cache, monkeypatch, "transfer", "--set", "depth=12")
    assert r.exit_code == 1 and "NAME=VALUE" in r.output


def test_studies_refuse_a_running_run_and_a_run_with_nothing_kept(tmp_path, tiny_cache, monkeypatch):
    ws = init_workspace(tmp_path / "ws", Settings(**TINY))
    j = Journal(ws / ".autoresearch" / "journal.db")
    j.create_run("r", "autoresearch/r", vcs.head(ws), "search", "greedy", asdict(Settings(**TINY)))
    base = j.add_experiment("r", 1, 0, "baseline", BASE, vcs.head(ws))
    j.update(base.id, state="done", status="keep", val_bpb=2.0, test_bpb=2.0, commit_sha=vcs.head(ws))
    session = j.start_session("r", {})  # this very process: alive
    r = invoke(ws, tiny_cache, monkeypatch, "ablate")
    assert r.exit_code == 1 and "run r is running" in r.output and "Wait for it to stop" in r.output
    r = invoke(ws, tiny_cache, monkeypatch, "transfer", "--set", "QUALITY=0.5")
    assert r.exit_code == 1 and "run r is running" in r.output
    j.end_session(session.id)
    j.update_run("r", state="stopped")
    j.close()
    r = invoke(ws, tiny_cache, monkeypatch, "ablate")
    assert r.exit_code == 1 and "nothing to ablate" in r.output
    r = invoke(ws, tiny_cache, monkeypatch, "transfer", "--set", "QUALITY=0.5")
    assert r.exit_code == 1 and "no gain to transfer" in r.output


def test_the_noise_decides_what_a_difference_is_worth():
    best, noisy = Stats(vals=[1.0, 1.02], tests=[1.0, 1.02]), Stats(vals=[1.01, 1.03], tests=[1.01, 1.03])
    assert pooled_std([best.tests, noisy.tests]) == pytest.approx(0.02 / 2 ** 0.5)
    d = Difference.between(noisy, best, None, [best, noisy])
    assert d.test == pytest.approx(0.01) and d.margin_test == pytest.approx(margin(0.02 / 2 ** 0.5, 2, 2, df=2))
    assert d.sign() == 0  # a hundredth of a bit, with seeds two hundredths apart: nothing
    assert Difference.between(noisy, best, 0.001, [best, noisy]).sign() == 0  # the larger of floor and spread
    far = Stats(vals=[1.2, 1.22], tests=[1.2, 1.22])
    assert Difference.between(far, best, None, [best, far]).sign() == 1
    assert Difference.between(far, best, 0.2, [best, far]).sign() == 0  # the run's floor: a noisier workspace
    assert Difference.between(best, far, None, [best, far]).sign() == -1  # a transfer that reverses
    assert Difference.between(Stats([1.0], [1.0]), Stats([1.0], [1.0]), None, []).margin == 1e-6
    erased = Transfer(study_id=1, tag="t", best_number=4, seeds=2, overrides={"DEPTH": 12}, budget="3s",
                      baseline=best, best=noisy, gain=Difference.between(best, noisy, None, [best, noisy]),
                      original={"test": 0.05, "val": 0.05})
    assert erased.verdict == "shrinks"
    assert "verdict: shrinks: the gain is within the noise" in "\n".join(transfer_lines(erased))
    erased.best = far
    erased.gain = Difference.between(best, far, None, [best, far])
    assert erased.verdict == "reverses" and Transfer.from_dict(erased.to_dict()) == erased
    assert parse_sets(["DEPTH=12", "WINDOW_PATTERN=SSSL", "LR=3e-4"]) == {"DEPTH": 12, "WINDOW_PATTERN": "SSSL",
                                                                         "LR": 3e-4}
    with pytest.raises(StudyError, match="NAME=VALUE"):
        parse_sets(["DEPTH"])


# -- what a revert is, change by change --------------------------------------------------------------------------

CAPS = """\
DEPTH = 4               # layers
MATRIX_LR = 0.02        # Muon
EMBED_LR = 0.3          # AdamW
WARMDOWN = 0.5          # share of the schedule


def model():
    return DEPTH * 2
"""


class _Subject:
    """What plan() reads of a run: the keeps in order, each on the commit before it, and the best."""

    def __init__(self, base: str, *changes: tuple[str, str]) -> None:
        from types import SimpleNamespace

        self.sources, self._keeps, parent = {"c1": base}, [], "c1"
        for k, (source, description) in enumerate(changes, start=2):
            self.sources[f"c{k}"] = source
            self._keeps.append(SimpleNamespace(number=k, description=description, train_py=source,
                                               parent_commit=parent, commit_sha=f"c{k}"))
            parent = f"c{k}"
        self.best = self._keeps[-1]

    def keeps(self):
        return self._keeps

    def source_at(self, commit: str) -> str:
        return self.sources[commit]

    def files_at(self, commit: str) -> dict[str, str]:  # a task's other editable files (none here: the GPT task)
        return getattr(self, "files", {}).get(commit, {})


def test_a_change_to_another_editable_file_is_taken_out_of_that_file():
    """A task's keep that changed model.py alone: the best without it has model.py as it was before, train.py as
    the best has it; one that a later change built on conflicts and is skipped, never forced."""
    from autoresearch.loop.ablate import plan

    subject = _Subject("A = 1\n", ("A = 1\n", "model width"), ("A = 2\n", "a of two"))
    subject.files = {"c1": {"model.py": "W = 8\n"}, "c2": {"model.py": "W = 16\n"}, "c3": {"model.py": "W = 16\n"}}
    changes, variants = plan(subject)
    assert [c.status for c in changes] == ["measured", "measured"]
    without = {v.name: v for v in variants}
    assert (without["without #2"].source, without["without #2"].files) == ("A = 2\n", {"model.py": "W = 8\n"})
    assert (without["without #3"].source, without["without #3"].files) == ("A = 1\n", {"model.py": "W = 16\n"})
    subject.files["c3"] = {"model.py": "W = 17\n"}  # the later change moved the same line
    changes, variants = plan(subject)
    assert changes[0].status == "conflict" and "another editable file" in changes[0].note
    assert [v.name for v in variants] == ["without #3"]


def test_a_change_to_a_constant_beside_another_change_is_reverted_by_name():
    """The search agent changes CAPS constants on neighbouring lines: taking one out of the best must not need the
    lines around it unchanged (git's merge conflicts on adjacent lines; a revert by name does not)."""
    from autoresearch.loop.ablate import plan

    lr = set_constants(CAPS, {"MATRIX_LR": 0.04})
    both = set_constants(lr, {"EMBED_LR": 0.6})  # the line right below
    changes, variants = plan(_Subject(CAPS, (lr, "matrix lr up"), (both, "embed lr up")))
    assert [c.status for c in changes] == ["measured", "measured"], [c.note for c in changes]
    assert [v.name for v in variants] == ["without #2", "without #3"]
    assert variants[0].source == set_constants(CAPS, {"EMBED_LR": 0.6})  # only #2's constant went back
    assert variants[1].source == lr


def test_a_constant_set_again_later_is_no_longer_the_changes_and_the_reason_says_who():
    from autoresearch.loop.ablate import plan

    two = set_constants(CAPS, {"MATRIX_LR": 0.04, "WARMDOWN": 0.3})
    again = set_constants(two, {"MATRIX_LR": 0.05})
    changes, variants = plan(_Subject(CAPS, (two, "lr and warmdown"), (again, "lr again")))
    first = changes[0]
    assert first.status == "measured" and "#3 set MATRIX_LR again" in first.note, first.note
    assert variants[0].source == set_constants(again, {"WARMDOWN": 0.5})  # what is left of #2 in the best
    only = set_constants(CAPS, {"MATRIX_LR": 0.04})
    changes, variants = plan(_Subject(CAPS, (only, "lr"), (set_constants(only, {"MATRIX_LR": 0.05}), "lr again")))
    assert changes[0].status == "gone" and "#3 set MATRIX_LR again (0.04 -> 0.05)" in changes[0].note
    assert [v.name for v in variants] == ["without #3"]


def test_a_revert_that_really_conflicts_names_the_lines():
    from autoresearch.loop.ablate import plan

    deeper = CAPS.replace("    return DEPTH * 2\n", "    return DEPTH * 3\n")
    rewritten = deeper.replace("    return DEPTH * 3\n", "    return DEPTH * 3 + 1\n")
    changes, variants = plan(_Subject(CAPS, (deeper, "wider"), (rewritten, "wider still")))
    assert changes[0].status == "conflict" and "line 8 of the best" in changes[0].note, changes[0].note
    assert [v.name for v in variants] == ["without #3"]


def test_a_study_tells_null_variants_apart_no_more_often_than_the_noise_policy_s_level():
    """Two variants that differ by nothing, 2 seeds each: the spread pooled from 4 runs has 2 degrees of freedom.
    Treated as known (a z margin) it calls ~18% of such pairs different; the t test on it, as the noise policy's,
    calls them different at its level, in each direction."""
    import random

    from autoresearch.loop.policy import NoisePolicy

    rng = random.Random(7)
    trials, told = 4000, 0
    for _ in range(trials):
        a = Stats(vals=[rng.gauss(1, 0.01) for _ in range(2)], tests=[rng.gauss(1, 0.01) for _ in range(2)])
        b = Stats(vals=[rng.gauss(1, 0.01) for _ in range(2)], tests=[rng.gauss(1, 0.01) for _ in range(2)])
        told += Difference.between(a, b, None, [a, b]).sign() != 0
    level = NoisePolicy().level
    assert told / trials < 2 * level * 1.4  # two sides, with room for the simulation's own noise (~0.3%)
    d = Difference.between(a, b, None, [a, b])
    assert d.df_test == 2 and d.margin_test == pytest.approx(margin(pooled_std([a.tests, b.tests]), 2, 2, df=2))
