"""The single record of a research run: a SQLite journal, and results.tsv derived from it.

Only the orchestrator writes here. Every step of an experiment is one transaction that moves it forward through
`proposed -> committed -> running -> done`, so after a crash of the orchestrator (even kill -9) the journal says
exactly how far each experiment got, and `loop.resume` can reconcile git with it. results.tsv is never appended
to: it is rewritten atomically from the journal after every decision, so the two cannot disagree.

The schema is versioned (`PRAGMA user_version`): SCHEMA is version 1, and each entry of MIGRATIONS takes a journal
one version up, in one transaction, when it is opened; so a journal written by an older autoresearch resumes.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from autoresearch.loop.keeps import keep_order

RESULTS_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription"  # a task's run: its metric in the second
STATES = ("proposed", "committed", "running", "done")
STATUSES = ("keep", "discard", "crash", "rejected")  # decisions; results.tsv writes rejected as crash

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    tag TEXT PRIMARY KEY,
    branch TEXT NOT NULL,
    base_commit TEXT NOT NULL,
    agent TEXT NOT NULL,
    policy TEXT NOT NULL,
    settings TEXT NOT NULL,          -- autoresearch.toml values, JSON
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',   -- running | stopped
    stop_reason TEXT NOT NULL DEFAULT '',
    info TEXT NOT NULL DEFAULT '{}'  -- JSON: noise floor and other run-level evidence
);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT NOT NULL REFERENCES runs(tag),
    number INTEGER NOT NULL,         -- the idea; 1 is the baseline
    attempt INTEGER NOT NULL DEFAULT 0,  -- 0 = first try, 1.. = the agent fixing its own crash
    state TEXT NOT NULL,             -- proposed | committed | running | done
    status TEXT,                     -- keep | discard | crash | rejected (when done)
    outcome TEXT,                    -- runner: ok | crash | timeout | nan | oom | rejected
    description TEXT NOT NULL,
    rationale TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL DEFAULT '',
    parent_commit TEXT NOT NULL,     -- the best commit the change was made on
    commit_sha TEXT,                 -- the experiment's commit (kept on the branch only if status is keep)
    train_py TEXT NOT NULL,
    diff TEXT NOT NULL DEFAULT '',
    val_bpb REAL,
    test_bpb REAL,                   -- held out: never shown to an agent
    memory_gb REAL,
    reason TEXT NOT NULL DEFAULT '',
    error_tail TEXT NOT NULL DEFAULT '',
    log_path TEXT NOT NULL DEFAULT '',
    run_dir TEXT NOT NULL DEFAULT '',
    training_seconds REAL,
    eval_seconds REAL,
    run_seconds REAL,                -- wall time of the experiment's process
    agent_seconds REAL,
    overhead_seconds REAL,           -- checks, git and bookkeeping around the run
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',   -- JSON: harness result, train.py's summary block, training curve
    evidence TEXT NOT NULL DEFAULT '{}',  -- JSON: why the decision was made
    created_at REAL NOT NULL,
    finished_at REAL,
    UNIQUE (tag, number, attempt)
);
CREATE TABLE IF NOT EXISTS charges (   -- agent usage that produced no proposal (failed calls still cost money)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT NOT NULL REFERENCES runs(tag),
    number INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created_at REAL NOT NULL
);
"""


# MIGRATIONS[i] takes a journal from version i + 1 to i + 2. Append only; never edit a released entry.
MIGRATIONS: list[list[str]] = [
    [  # 2: how the experiment trained, measured by the harness and the runner (steps, tokens, speed, start-up)
        "ALTER TABLE experiments ADD COLUMN startup_seconds REAL",
        "ALTER TABLE experiments ADD COLUMN steps INTEGER",
        "ALTER TABLE experiments ADD COLUMN train_tokens INTEGER",
        "ALTER TABLE experiments ADD COLUMN tokens_per_second REAL",
    ],
    [  # 3: one row per `autoresearch run` process on a run: the options --resume restores, and active time
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            tag TEXT NOT NULL REFERENCES runs(tag),
            options TEXT NOT NULL DEFAULT '{}',  -- JSON: agent, policy, limits (loop/options.py)
            pid INTEGER NOT NULL,
            host TEXT NOT NULL DEFAULT '',
            started_at REAL NOT NULL,
            ended_at REAL                        -- NULL: still going, or killed (kill -9, a power cut)
        )""",
    ],
    [  # 4: many experiments at once: which worker ran each, where, and which best it started from
        "ALTER TABLE experiments ADD COLUMN worker INTEGER",  # the slot's number (1..N); NULL before schema 4
        "ALTER TABLE experiments ADD COLUMN device TEXT NOT NULL DEFAULT ''",  # cuda:0, cpu, ray
        "ALTER TABLE experiments ADD COLUMN node TEXT NOT NULL DEFAULT ''",  # the machine it ran on
        # The best commit the proposal was made on. parent_commit starts equal, and moves when the change is
        # rebased onto a newer best (loop/ledger.py); this one never moves.
        "ALTER TABLE experiments ADD COLUMN started_from TEXT",
    ],
    [  # 5: studies of a finished run (`ablate`, `transfer`): what each measured, run by run, beside the loop's records
        """CREATE TABLE studies (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            tag TEXT NOT NULL REFERENCES runs(tag),
            kind TEXT NOT NULL,                  -- ablate | transfer
            best_number INTEGER NOT NULL,        -- the run's best when the study started
            plan TEXT NOT NULL DEFAULT '{}',     -- JSON: seeds, settings, the variants and the changes skipped
            findings TEXT NOT NULL DEFAULT '{}', -- JSON: the figures and verdicts, once done
            state TEXT NOT NULL DEFAULT 'running',  -- running | done | stopped
            created_at REAL NOT NULL,
            finished_at REAL
        )""",
        """CREATE TABLE measurements (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            study_id INTEGER NOT NULL REFERENCES studies(id),
            variant TEXT NOT NULL,               -- best | baseline | without #N
            seed INTEGER NOT NULL,               -- k of with_seed: the same k across variants, so runs pair up
            status TEXT NOT NULL,                -- the runner's: ok | crash | timeout | ...
            val_bpb REAL,
            test_bpb REAL,
            reason TEXT NOT NULL DEFAULT '',
            run_dir TEXT NOT NULL DEFAULT '',
            run_seconds REAL,
            created_at REAL NOT NULL
        )""",
    ],
    [  # 6: a task's editable files other than train.py, as the experiment has them: JSON, path -> complete text
        "ALTER TABLE experiments ADD COLUMN files TEXT NOT NULL DEFAULT '{}'",  # {}: train.py only (the GPT task)
    ],
]
SCHEMA_VERSION = 1 + len(MIGRATIONS)


class JournalError(Exception):
    pass


@dataclass
class ExperimentRecord:
    id: int
    tag: str
    number: int
    attempt: int
    state: str
    status: str | None
    outcome: str | None
    description: str
    rationale: str
    agent: str
    parent_commit: str
    commit_sha: str | None
    train_py: str
    diff: str
    val_bpb: float | None
    test_bpb: float | None
    memory_gb: float | None
    reason: str
    error_tail: str
    log_path: str
    run_dir: str
    training_seconds: float | None
    eval_seconds: float | None
    run_seconds: float | None
    agent_seconds: float | None
    overhead_seconds: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    metrics: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    created_at: float = 0.0
    finished_at: float | None = None
    startup_seconds: float | None = None
    steps: int | None = None
    train_tokens: int | None = None
    tokens_per_second: float | None = None
    worker: int | None = None
    device: str = ""
    node: str = ""
    started_from: str | None = None
    files: dict = field(default_factory=dict)  # beside train_py: the other editable files (schema 6; {} before)

    @property
    def tsv_status(self) -> str:
        return "crash" if self.status == "rejected" else (self.status or "crash")


@dataclass
class RunRecord:
    tag: str
    branch: str
    base_commit: str
    agent: str
    policy: str
    settings: dict
    created_at: float
    state: str
    stop_reason: str
    info: dict


@dataclass
class SessionRecord:
    id: int
    tag: str
    options: dict
    pid: int
    host: str
    started_at: float
    ended_at: float | None


@dataclass
class StudyRecord:
    id: int
    tag: str
    kind: str
    best_number: int
    plan: dict
    findings: dict
    state: str
    created_at: float
    finished_at: float | None


@dataclass
class MeasurementRecord:
    id: int
    study_id: int
    variant: str
    seed: int
    status: str
    val_bpb: float | None
    test_bpb: float | None
    reason: str
    run_dir: str
    run_seconds: float | None
    created_at: float


_JSON_FIELDS = {"metrics", "evidence", "settings", "info", "options", "plan", "findings", "files"}
_EXPERIMENT_COLUMNS = {f.name for f in fields(ExperimentRecord)} - {"id"}


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Explicit transactions below. One connection serves the orchestrator's threads (workers decide and record
        # from their own threads), always under the ledger's lock: check_same_thread would refuse that.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")  # readers (status, dashboard) never block the loop
        self.db.execute("PRAGMA synchronous=FULL")  # a committed step survives power loss, not just kill -9
        self.db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0] or 1  # 0: from before versioning, or new
        if version > SCHEMA_VERSION:
            raise JournalError(f"{self.path} has schema version {version}, newer than this autoresearch knows "
                               f"({SCHEMA_VERSION}): upgrade autoresearch (pip install -U autoresearch)")
        for v in range(version, SCHEMA_VERSION):
            with self.transaction() as db:
                for statement in MIGRATIONS[v - 1]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {v + 1}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------------------------------------

    def create_run(self, tag: str, branch: str, base_commit: str, agent: str, policy: str, settings: dict) -> RunRecord:
        with self.transaction() as db:
            db.execute("INSERT INTO runs (tag, branch, base_commit, agent, policy, settings, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (tag, branch, base_commit, agent, policy, json.dumps(settings), time.time()))
        run = self.run(tag)
        assert run is not None
        return run

    def run(self, tag: str) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE tag = ?", (tag,)).fetchone()
        return _record(RunRecord, row) if row else None

    def runs(self) -> list[RunRecord]:
        return [_record(RunRecord, r) for r in self.db.execute("SELECT * FROM runs ORDER BY created_at")]

    def update_run(self, tag: str, **values: Any) -> None:
        _update(self, "runs", "tag", tag, values)

    # -- sessions --------------------------------------------------------------------------------------------------

    def start_session(self, tag: str, options: dict) -> SessionRecord:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO sessions (tag, options, pid, host, started_at) VALUES (?, ?, ?, ?, ?)",
                             (tag, json.dumps(options), os.getpid(), socket.gethostname(), time.time()))
        row = self.db.execute("SELECT * FROM sessions WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _record(SessionRecord, row)

    def end_session(self, session_id: int) -> None:
        _update(self, "sessions", "id", session_id, {"ended_at": time.time()})

    def sessions(self, tag: str) -> list[SessionRecord]:
        """The run's sessions, oldest first; none from a journal older than schema 3 (a reader cannot migrate)."""
        try:
            rows = self.db.execute("SELECT * FROM sessions WHERE tag = ? ORDER BY id", (tag,)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [_record(SessionRecord, r) for r in rows]

    # -- experiments -----------------------------------------------------------------------------------------------

    def add_experiment(self, tag: str, number: int, attempt: int, description: str, train_py: str,
                       parent_commit: str, **values: Any) -> ExperimentRecord:
        """Record a proposal with everything known of it (agent, usage, diff...) in one transaction: a kill
        cannot leave it recorded without what it cost."""
        row = {"tag": tag, "number": number, "attempt": attempt, "state": "proposed", "description": description,
               "train_py": train_py, "parent_commit": parent_commit, "created_at": time.time(), **values}
        _check(row)
        unknown = set(row) - _EXPERIMENT_COLUMNS
        if unknown:
            raise ValueError(f"no such experiment field(s): {', '.join(sorted(unknown))}")
        params = [json.dumps(v) if k in _JSON_FIELDS else v for k, v in row.items()]
        with self.transaction() as db:
            cur = db.execute(f"INSERT INTO experiments ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                             params)
        return self.get(cur.lastrowid)

    def update(self, exp_id: int, **values: Any) -> None:
        _check(values)
        _update(self, "experiments", "id", exp_id, values)

    def get(self, exp_id: int) -> ExperimentRecord:
        row = self.db.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            raise KeyError(exp_id)
        return _record(ExperimentRecord, row)

    def experiments(self, tag: str, done_only: bool = False) -> list[ExperimentRecord]:
        sql = "SELECT * FROM experiments WHERE tag = ?" + (" AND state = 'done'" if done_only else "")
        return [_record(ExperimentRecord, r) for r in self.db.execute(sql + " ORDER BY number, attempt", (tag,))]

    def final_attempts(self, tag: str) -> list[ExperimentRecord]:
        """One record per finished idea: its last attempt (what results.tsv lists)."""
        last: dict[int, ExperimentRecord] = {}
        for e in self.experiments(tag, done_only=True):
            if e.status is not None:
                last[e.number] = e
        return [last[n] for n in sorted(last)]

    def unfinished(self, tag: str) -> ExperimentRecord | None:
        row = self.db.execute("SELECT * FROM experiments WHERE tag = ? AND state != 'done' "
                              "ORDER BY number DESC, attempt DESC LIMIT 1", (tag,)).fetchone()
        return _record(ExperimentRecord, row) if row else None

    def all_unfinished(self, tag: str) -> list[ExperimentRecord]:
        """Every experiment not done (several when workers ran side by side): the latest attempt of each idea."""
        rows = self.db.execute("SELECT * FROM experiments WHERE tag = ? AND state != 'done' "
                               "ORDER BY number, attempt", (tag,)).fetchall()
        last = {r["number"]: _record(ExperimentRecord, r) for r in rows}
        return [last[n] for n in sorted(last)]

    def proposed_by_agent(self, train_py: str) -> bool:
        """Whether an agent proposed exactly this train.py in any run of the workspace (number 1: a baseline)."""
        sql = "SELECT 1 FROM experiments WHERE number > 1 AND train_py = ? LIMIT 1"
        return self.db.execute(sql, (train_py,)).fetchone() is not None

    def best(self, tag: str) -> ExperimentRecord | None:
        """The last keep decided (the branch's tip): each keep beats the one before it."""
        kept = keep_order(self.final_attempts(tag))
        return kept[-1] if kept else None

    def add_charge(self, tag: str, number: int, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO charges (tag, number, input_tokens, output_tokens, cost_usd, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (tag, number, input_tokens, output_tokens, cost_usd, time.time()))

    def totals(self, tag: str) -> dict[str, float]:
        """Agent usage of the run: proposals plus failed calls."""
        sums = "COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0)"
        a = self.db.execute(f"SELECT {sums} FROM experiments WHERE tag = ?", (tag,)).fetchone()
        b = self.db.execute(f"SELECT {sums} FROM charges WHERE tag = ?", (tag,)).fetchone()
        return {"cost": a[0] + b[0], "input_tokens": a[1] + b[1], "output_tokens": a[2] + b[2]}

    # -- studies of a run: ablate, transfer ----------------------------------------------------------------------

    def add_study(self, tag: str, kind: str, best_number: int, plan: dict) -> StudyRecord:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO studies (tag, kind, best_number, plan, created_at) VALUES (?, ?, ?, ?, ?)",
                             (tag, kind, best_number, json.dumps(plan), time.time()))
        return self.study(cur.lastrowid)

    def study(self, study_id: int) -> StudyRecord:
        row = self.db.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row is None:
            raise KeyError(study_id)
        return _record(StudyRecord, row)

    def update_study(self, study_id: int, **values: Any) -> None:
        _update(self, "studies", "id", study_id, values)

    def studies(self, tag: str, kind: str | None = None) -> list[StudyRecord]:
        """The run's studies, oldest first; none from a journal older than schema 5 (a reader cannot migrate)."""
        sql = "SELECT * FROM studies WHERE tag = ?" + (" AND kind = ?" if kind else "") + " ORDER BY id"
        try:
            rows = self.db.execute(sql, (tag, kind) if kind else (tag,)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [_record(StudyRecord, r) for r in rows]

    def add_measurement(self, study_id: int, variant: str, seed: int, status: str, val_bpb: float | None,
                        test_bpb: float | None, reason: str = "", run_dir: str = "",
                        run_seconds: float | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO measurements (study_id, variant, seed, status, val_bpb, test_bpb, reason, "
                       "run_dir, run_seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (study_id, variant, seed, status, val_bpb, test_bpb, reason, run_dir, run_seconds,
                        time.time()))

    def measurements(self, study_id: int) -> list[MeasurementRecord]:
        rows = self.db.execute("SELECT * FROM measurements WHERE study_id = ? ORDER BY id", (study_id,)).fetchall()
        return [_record(MeasurementRecord, r) for r in rows]

    # -- results.tsv -----------------------------------------------------------------------------------------------

    def write_results_tsv(self, tag: str, path: Path) -> None:
        from autoresearch.task.metric import metric_of

        lines = [RESULTS_HEADER.replace("val_bpb", metric_of(getattr(self.run(tag), "info", None)).name)]
        for e in self.final_attempts(tag):
            val = f"{e.val_bpb:.6f}" if e.val_bpb is not None and e.status in ("keep", "discard") else "0.000000"
            mem = f"{e.memory_gb:.1f}" if e.memory_gb is not None and e.status in ("keep", "discard") else "0.0"
            commit = (e.commit_sha or e.parent_commit)[:7]
            desc = " ".join(e.description.split())  # one line, no tabs
            lines.append(f"{commit}\t{val}\t{mem}\t{e.tsv_status}\t{desc}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, path)


def read_results_tsv(path: Path) -> list[dict[str, str]]:
    """The rows as dicts; the second column (val_bpb, or a task's metric) is under "val_bpb" either way."""
    rows = path.read_text().splitlines()
    head, want = (rows[0] if rows else "").split("\t"), RESULTS_HEADER.split("\t")
    if len(head) != 5 or head[:1] + head[2:] != want[:1] + want[2:]:
        raise ValueError(f"{path} does not start with the header {RESULTS_HEADER!r} (a task's metric second)")
    keys = RESULTS_HEADER.split("\t")
    return [dict(zip(keys, line.split("\t"))) for line in rows[1:] if line]


def _check(values: dict[str, Any]) -> None:
    if "state" in values and values["state"] not in STATES:
        raise ValueError(f"bad state {values['state']!r}")
    if values.get("status") is not None and values["status"] not in STATUSES:
        raise ValueError(f"bad status {values['status']!r}")


def _update(journal: Journal, table: str, key: str, value: Any, values: dict[str, Any]) -> None:
    if not values:
        return
    cols = ", ".join(f"{k} = ?" for k in values)
    params = [json.dumps(v) if k in _JSON_FIELDS else v for k, v in values.items()]
    with journal.transaction() as db:
        db.execute(f"UPDATE {table} SET {cols} WHERE {key} = ?", (*params, value))


def _record(cls, row: sqlite3.Row):
    names = {f.name for f in fields(cls)}
    data = {k: (json.loads(row[k]) if k in _JSON_FIELDS else row[k]) for k in row.keys() if k in names}
    return cls(**data)
