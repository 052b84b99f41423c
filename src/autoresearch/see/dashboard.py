"""`autoresearch dashboard`: a local web page that follows a run live, from the journal alone.

A stdlib HTTP server: it serves one page (assets under dashboard/, uPlot vendored, nothing from a CDN) and a few
JSON endpoints the page polls. Every request opens the journal read-only and closes it, so the server never holds
a lock, never writes, and shows a finished run the same way as a running one.

    GET /api/runs                         [{tag, branch, agent, state, created_at, experiments}]
    GET /api/state?tag=T                  the run, its summary, every attempt, the best so far, what is
                                          training now and its loss curve (see `state`)
    GET /api/experiment/N[/A]?tag=T       one attempt with its diff, rationale, reason and error tail
    GET /progress.png?tag=T               the report's figure

Every one of them needs the dashboard's token (`token=` in the query, or the X-Autoresearch-Token header), a
secret drawn for each server and printed in its address: a command agent keeps the host's network (it talks to its
model's API), and the Host check below only stops a browser, not a program that says what it likes. The page and
its assets need none: they hold no data.
"""

from __future__ import annotations

import glob
import hmac
import json
import math
import mimetypes
import re
import secrets
import sqlite3
import time
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from autoresearch.loop.journal import ExperimentRecord
from autoresearch.see.facts import Facts, ReadOnlyJournal, gather, journal_path, pick_run, read_loss
from autoresearch.vcs import diff_files

ASSETS = Path(__file__).parent / "dashboard"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "X-Autoresearch-Token"
NEEDS_TOKEN = ("this dashboard answers only with its token: open the address `autoresearch dashboard` printed "
               "(it ends in ?token=...)")
_EXPERIMENT = re.compile(r"^/api/experiment/(\d+)(?:/(\d+))?$")


class NotFound(Exception):
    pass


# -- the JSON the page reads ----------------------------------------------------------------------------------------

def runs(workspace: Path) -> list[dict]:
    try:
        journal = ReadOnlyJournal(journal_path(workspace))
    except FileNotFoundError:
        return []
    try:
        return [{"tag": r.tag, "branch": r.branch, "agent": r.agent, "state": r.state, "created_at": r.created_at,
                 "experiments": len(journal.final_attempts(r.tag))} for r in journal.runs()]
    finally:
        journal.close()


def state(workspace: Path, tag: str | None = None, cache: Path | None = None) -> dict:
    """Everything the page shows, in one object. `run` is None until the workspace has a run."""
    empty = {"generated_at": time.time(), "workspace": str(workspace), "run": None, "summary": None,
             "experiments": [], "best": None, "current": None, "training": None, "workers": [], "agents": []}
    try:
        journal = ReadOnlyJournal(journal_path(workspace))
    except FileNotFoundError:
        return empty
    try:
        try:
            run = pick_run(journal, tag)
        except FileNotFoundError:
            if tag is not None:
                raise NotFound(f"no run tagged {tag!r}") from None
            return empty
        facts = gather(journal, run, cache)
        run = facts.run  # stopped, when the process of its last session is gone
    finally:
        journal.close()
    return {
        **empty,
        "run": {"tag": run.tag, "branch": run.branch, "agent": run.agent, "policy": run.policy, "state": run.state,
                "stop_reason": run.stop_reason, "created_at": run.created_at, "base_commit": run.base_commit,
                "time_budget": run.settings.get("time_budget")},
        "summary": asdict(facts.summary),
        "experiments": [{**asdict(r), "label": r.label} for r in facts.rows],
        "best": _best(facts),
        "current": _current(facts),
        "training": _training(facts),
        "workers": [asdict(b) for b in facts.busy],
        "agents": [asdict(a) for a in facts.agents],
    }


def experiment(workspace: Path, number: int, attempt: int | None, tag: str | None = None) -> dict:
    journal = ReadOnlyJournal(journal_path(workspace))
    try:
        run = pick_run(journal, tag)
        recs = [e for e in journal.experiments(run.tag) if e.number == number]
    finally:
        journal.close()
    if attempt is not None:
        recs = [e for e in recs if e.attempt == attempt]
    if not recs:
        raise NotFound(f"no experiment {number}" + (f" attempt {attempt}" if attempt is not None else ""))
    e = recs[-1]
    return {"number": e.number, "attempt": e.attempt, "state": e.state, "status": e.status, "outcome": e.outcome,
            "description": e.description, "rationale": e.rationale, "agent": e.agent,
            "commit": (e.commit_sha or "")[:7], "parent_commit": e.parent_commit[:7], "val_bpb": e.val_bpb,
            "test_bpb": e.test_bpb, "reason": e.reason, "error_tail": e.error_tail, "diff": e.diff,
            "metrics": e.metrics, "evidence": e.evidence}


def _best(facts: Facts) -> dict | None:
    keeps = facts.keeps
    if not keeps:
        return None
    last = keeps[-1]  # the last decided: workers may keep a later number first
    best, first = facts.record(last), facts.record(keeps[0])
    return {"number": best.number, "attempt": best.attempt, "commit": (best.commit_sha or best.parent_commit)[:7],
            "val_bpb": best.val_bpb, "test_bpb": best.test_bpb, "description": best.description, "diff": best.diff,
            "diff_from_baseline": diff_files({"train.py": first.train_py, **first.files},
                                             {"train.py": best.train_py, **(best.files if first.files else {})})
                                  if best is not first else ""}  # an older baseline's record has train.py alone


def _current(facts: Facts) -> dict | None:
    live = [e for e in facts.records if e.state != "done"]
    if not live or facts.run.state != "running":
        return None
    e = live[-1]
    return {"number": e.number, "attempt": e.attempt, "state": e.state, "description": e.description,
            "agent": e.agent, "proposed_at": e.created_at, "elapsed_seconds": max(0.0, time.time() - e.created_at),
            "budget_seconds": facts.run.settings.get("time_budget")}


def _training(facts: Facts) -> dict | None:
    """The loss curve of the experiment training now, or else of the latest one that left a log."""
    running = facts.run.state == "running"
    for e in reversed(facts.records):
        live = running and e.state == "running"
        if not e.run_dir or (e.state != "done" and not live):
            continue
        log, repeat = _latest_log(e)
        curve = read_loss(log)
        if curve.steps or live:
            return {"number": e.number, "attempt": e.attempt, "description": e.description, "live": live,
                    "status": e.status or e.state, "repeat": repeat, "steps": curve.steps, "loss": curve.loss,
                    "last": curve.last}
    return None


def _latest_log(e: ExperimentRecord) -> tuple[Path, int | None]:
    """The experiment's newest run.log: the noise policy repeats a run with other seeds in `<run_dir>-seedN`."""
    run_dir = Path(e.run_dir)
    logs = [(run_dir / "run.log", None)] + [(d / "run.log", int(d.name.rsplit("-seed", 1)[1]))
                                           for d in run_dir.parent.glob(f"{glob.escape(run_dir.name)}-seed*")
                                           if d.name.rsplit("-seed", 1)[1].isdigit()]
    existing = [(p, n) for p, n in logs if p.exists()]
    return max(existing, key=lambda x: x[0].stat().st_mtime) if existing else logs[0]


# -- the server -----------------------------------------------------------------------------------------------------

class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True  # a browser's open connection never keeps the process alive

    def __init__(self, address: tuple[str, int], workspace: Path, tag: str | None = None,
                 cache: Path | None = None, token: str | None = None) -> None:
        self.workspace, self.tag, self.cache = workspace, tag, cache
        self.token = token or secrets.token_urlsafe(24)  # 192 bits, new for every server
        super().__init__(address, Handler)

    @property
    def origin(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'localhost' if host in LOOPBACK else host}:{port}"

    @property
    def url(self) -> str:
        """The page's address, with the token: what `autoresearch dashboard` prints."""
        return f"{self.origin}/?token={self.token}"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        tag = query.get("tag") or self.server.tag
        ws = self.server.workspace
        if not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b"forbidden host", "text/plain")
        if (url.path.startswith("/api/") or url.path == "/progress.png") and not self._token_ok(query):
            return self._json({"error": NEEDS_TOKEN}, HTTPStatus.FORBIDDEN)
        try:
            if url.path == "/api/state":
                return self._json(state(ws, tag, self.server.cache))
            if url.path == "/api/runs":
                return self._json(runs(ws))
            if m := _EXPERIMENT.match(url.path):
                return self._json(experiment(ws, int(m[1]), int(m[2]) if m[2] else None, tag))
            if url.path == "/progress.png":
                return self._send(HTTPStatus.OK, _progress_png(ws, tag, self.server.cache), "image/png")
            if url.path in ("/", "/index.html"):
                return self._static("index.html")
            if url.path.startswith("/static/"):
                return self._static(url.path.removeprefix("/static/"))
            return self._json({"error": f"not found: {url.path}"}, HTTPStatus.NOT_FOUND)
        except (NotFound, FileNotFoundError) as e:
            return self._json({"error": str(e)}, HTTPStatus.NOT_FOUND)
        except sqlite3.Error as e:  # a journal being created or recovered: the page polls again in 2 s
            return self._json({"error": f"journal not readable yet: {e}"}, HTTPStatus.SERVICE_UNAVAILABLE)

    def _static(self, name: str) -> None:
        path = (ASSETS / name).resolve()
        if not name or ASSETS.resolve() not in path.parents or not path.is_file():
            return self._json({"error": f"not found: {self.path}"}, HTTPStatus.NOT_FOUND)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, path.read_bytes(), ctype + ("; charset=utf-8" if ctype.startswith("text/") or
                                                               ctype.endswith("javascript") else ""))

    def _json(self, data: object, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(_finite(data), allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _host_ok(self) -> bool:
        """Bound to loopback, answer only requests addressed to loopback: a web page elsewhere cannot reach in
        through a DNS name rebound to 127.0.0.1."""
        if self.server.server_address[0] not in LOOPBACK:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in LOOPBACK

    def _token_ok(self, query: dict[str, str]) -> bool:
        given = self.headers.get(TOKEN_HEADER) or query.get("token") or ""
        return hmac.compare_digest(given.encode(), self.server.token.encode())  # in constant time

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per poll every 2 s would bury everything else on the terminal


def serve(workspace: Path, host: str = "127.0.0.1", port: int = 8765, tag: str | None = None,
          cache: Path | None = None) -> DashboardServer:
    """Bind the server (port 0 picks a free one); the caller runs `serve_forever()` and `server_close()`."""
    return DashboardServer((host, port), workspace, tag, cache)


def _progress_png(workspace: Path, tag: str | None, cache: Path | None) -> bytes:
    from autoresearch.see.plot import progress_png

    journal = ReadOnlyJournal(journal_path(workspace))
    try:
        facts = gather(journal, pick_run(journal, tag), cache)
    finally:
        journal.close()
    return progress_png(facts)


def _finite(x: object) -> object:
    """JSON has no NaN or infinity: a diverged loss or metric becomes null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x
