"""The compile cache is private to each run: seeded by a copy that follows no symlink, deleted after the run, and
the seed replaced atomically, only from a human-written run (the baseline of a research run)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from autoresearch.loop.core import Loop
from autoresearch.loop.journal import Journal
from autoresearch.run import compile_cache
from autoresearch.run.supervisor import Experiment, RunResult, _cache_env, _finish_compile_cache
from autoresearch.settings import Settings


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_private_copy_follows_no_symlink(tmp_path):
    outside = tree(tmp_path / "outside", {"val.tokens.npy": "secret", "dir/w.pt": "weights"})
    seed = tree(tmp_path / "seed", {"inductor/fx/a.py": "kernel", "triton/k/b.json": "{}"})
    (seed / "inductor" / "link").symlink_to(outside / "val.tokens.npy")
    (seed / "triton" / "linkdir").symlink_to(outside / "dir", target_is_directory=True)
    private = tmp_path / "run" / "compile-cache"
    assert compile_cache.seed_private(seed, private) == (2, len("kernel") + 2)
    assert contents(private) == {"inductor/fx/a.py": "kernel", "triton/k/b.json": "{}"}
    assert not any(p.is_symlink() for p in private.rglob("*"))


def experiment(tmp_path: Path, fills: bool) -> Experiment:
    return Experiment(source="", workspace=tmp_path, settings=Settings.from_profile("cpu"), run_dir=tmp_path / "run",
                      compile_cache=tmp_path / "seed", fills_compile_cache=fills)


def test_an_agent_run_reads_the_seed_and_leaves_nothing(tmp_path):
    tree(tmp_path / "seed", {"inductor/a.py": "kernel"})
    exp = experiment(tmp_path, fills=False)
    env = _cache_env(exp)
    private = Path(env["TORCHINDUCTOR_CACHE_DIR"])
    assert private.parent == compile_cache.private_dir(exp.run_dir) and (private / "a.py").read_text() == "kernel"
    assert all(Path(v).is_relative_to(exp.run_dir) for v in env.values())  # the seed is never named to the run
    (private / "w.pt").write_text("weights")  # what an experiment would leave for the next one
    _finish_compile_cache(exp, RunResult(status="ok"))
    assert not compile_cache.private_dir(exp.run_dir).exists()
    assert contents(tmp_path / "seed") == {"inductor/a.py": "kernel"}


def test_a_human_written_run_that_succeeds_replaces_the_seed(tmp_path):
    tree(tmp_path / "seed", {"inductor/a.py": "kernel"})
    for status, expected in (("crash", {"inductor/a.py": "kernel"}),
                             ("ok", {"inductor/a.py": "kernel", "inductor/b.py": "new kernel"})):
        exp = experiment(tmp_path, fills=True)
        private = Path(_cache_env(exp)["TORCHINDUCTOR_CACHE_DIR"])
        (private / "b.py").write_text("new kernel")
        _finish_compile_cache(exp, RunResult(status=status))
        assert contents(tmp_path / "seed") == expected, status
        assert not compile_cache.private_dir(exp.run_dir).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "seed"]  # no temporary trees left


def test_a_symlink_in_place_of_the_private_cache_is_removed_not_followed(tmp_path):
    target = tree(tmp_path / "target", {"keep.txt": "mine"})
    private = tmp_path / "run" / "compile-cache"
    private.parent.mkdir()
    private.symlink_to(target, target_is_directory=True)
    assert not compile_cache.publish(private, tmp_path / "seed")
    compile_cache.discard(private)
    assert not private.exists() and contents(target) == {"keep.txt": "mine"}


def test_concurrent_publishers_and_readers_see_whole_trees(tmp_path):
    seed = tmp_path / "seed"
    versions = [tree(tmp_path / f"private{i}", {f"f{j}": f"{i}" * 2000 for j in range(40)}) for i in range(4)]
    copies: list[dict[str, str]] = []

    def read():
        for k in range(10):
            compile_cache.seed_private(seed, tmp_path / f"reader{k}")
            copies.append(contents(tmp_path / f"reader{k}"))

    threads = [threading.Thread(target=compile_cache.publish, args=(v, seed)) for v in versions]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert contents(seed) in [contents(v) for v in versions]  # one publisher won, whole
    for copy in copies:  # a copy racing a swap may miss files (a cache miss), but never holds a partial one
        assert all(len(text) == 2000 and len(set(text)) == 1 for text in copy.values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".seed.")]


def test_only_a_baseline_no_agent_proposed_fills_the_seed(tmp_path):
    journal = Journal(tmp_path / "journal.db")
    journal.create_run("a", "autoresearch/a", "c0", "search", "greedy", {})
    human = journal.add_experiment("a", 1, 0, "baseline", "human text", "c0", agent="baseline")
    proposal = journal.add_experiment("a", 2, 0, "idea", "agent text", "c0", agent="search")
    journal.create_run("b", "autoresearch/b", "c1", "search", "greedy", {})  # started from the agent's commit
    from_agent = journal.add_experiment("b", 1, 0, "baseline", "agent text", "c1", agent="baseline")
    loop = SimpleNamespace(journal=journal)
    assert Loop.human_baseline(loop, human)
    assert not Loop.human_baseline(loop, proposal)
    assert not Loop.human_baseline(loop, from_agent)
    journal.close()
