"""The journal's schema is versioned: an older journal is migrated when opened; a newer one is refused."""

from __future__ import annotations

import sqlite3

import pytest

from autoresearch.loop import journal as jm
from autoresearch.loop.journal import SCHEMA_VERSION, Journal, JournalError


def test_a_journal_from_before_versioning_is_migrated_and_keeps_its_records(tmp_path):
    path = tmp_path / "journal.db"
    old = sqlite3.connect(path)
    old.executescript(jm.SCHEMA)  # version 1, as the first release wrote it (user_version 0)
    old.execute("INSERT INTO runs (tag, branch, base_commit, agent, policy, settings, created_at) "
                "VALUES ('t', 'b', 'c', 'search', 'noise', '{}', 1.0)")
    old.execute("INSERT INTO experiments (tag, number, state, description, parent_commit, train_py, created_at) "
                "VALUES ('t', 1, 'done', 'baseline', 'c', 'print()', 1.0)")
    old.commit()
    old.close()
    j = Journal(path)
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    rec = j.experiments("t")[0]
    assert rec.description == "baseline" and rec.steps is None and rec.tokens_per_second is None
    assert rec.files == {} and rec.train_py == "print()"  # an old record: train.py only
    j.update(rec.id, files={"model.py": "WIDTH = 8\n"})
    assert j.get(rec.id).files == {"model.py": "WIDTH = 8\n"}
    j.update(rec.id, steps=12, tokens_per_second=345.0, train_tokens=4096, startup_seconds=2.5)
    assert (j.get(rec.id).steps, j.get(rec.id).tokens_per_second) == (12, 345.0)
    j.close()
    Journal(path).close()  # opening again migrates nothing twice


def test_a_journal_from_a_newer_autoresearch_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "journal.db"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="upgrade autoresearch"):
        Journal(path)
