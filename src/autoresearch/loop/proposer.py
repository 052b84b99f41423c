"""Asking an agent for the next change, in a worker's own checkout: the context it gets (the best train.py and a
task's other editable files, the compacted history, the experiments in flight on the other workers), the waits
after provider errors, and the checks a proposal must pass before anything runs.

A proposal changes train.py and, in a task workspace, any other file the task declares editable: those the agent
names in Proposal.files, and those a command agent changed in its checkout. The record keeps every other editable
file as the proposal has them (`files`, complete texts) and one diff covering them all; a file that is not
editable, a path outside the workspace or a deleted file is refused with the reason, which the next prompt shows."""

from __future__ import annotations

import ast
import posixpath
import threading
import time
from pathlib import Path

from autoresearch import vcs
from autoresearch.agents.base import Agent, AgentError, Context, Failure, HistoryEntry, InFlight, Proposal
from autoresearch.loop.journal import ExperimentRecord
from autoresearch.loop.ledger import Ledger
from autoresearch.paths import through_link
from autoresearch.run import guard
from autoresearch.run.task_runner import refused
from autoresearch.settings import Settings
from autoresearch.task.store import is_task_workspace, workspace_task
from autoresearch.workspace import EDITABLE, harness_surface

AGENT_BACKOFF = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # waits after non-fatal agent errors; the last repeats
MAX_NAME, MAX_PATH = 255, 1024  # bytes of a path's part and of the whole: what every filesystem we run on holds
AGENT_SAME_ERRORS = 3  # the same non-transient agent error this often in a row will not pass by waiting: stop


class Stopped(Exception):
    """The orchestrator is stopping: the proposal in progress is dropped, unrecorded."""

MAX_FILE_BYTES = 1 << 20  # a proposal's files, each: code and configs, which the journal and prompts hold


class Proposer:
    def __init__(self, ws: Path, settings: Settings, ledger: Ledger, stop: threading.Event, message,
                 sleep=None) -> None:
        self.ws, self.settings, self.ledger, self.stop, self.message = ws, settings, ledger, stop, message
        self.sleep = sleep  # tests replace the waits between agent retries
        self.task = workspace_task(ws) if is_task_workspace(ws) else None  # a researcher's task, or the GPT's

    def propose(self, agent: Agent, checkout: Path, number: int | None, attempt: int, failure: Failure | None,
                worker: int, device: str, parent: str | None = None) -> ExperimentRecord:
        """Ask `agent` (in `checkout`, a worker's worktree at `parent`, by default the best) and record its
        proposal, or why it cannot run (rejected: it costs no run). Waits out non-fatal agent errors; a fatal one
        is raised. A fix gives the parent of the change it fixes: the change and its fix are made on one best."""
        parent = parent or self.ledger.best_commit()
        if failure is None:
            vcs.detach_at(checkout, parent)
        ctx = self.context(checkout, parent, number, failure)
        best_source, guess = ctx.train_py, ctx.experiment
        if failure is not None:  # a command agent edits the files on disk: show it the failed attempt
            for name, text in {EDITABLE: failure.train_py, **failure.files}.items():
                (checkout / name).parent.mkdir(parents=True, exist_ok=True)
                (checkout / name).write_text(text)
        before = set(vcs.status_porcelain(checkout))
        last, same = "", 0  # the last error, and how often in a row it came
        for wait in _backoff():
            if self.stop.is_set():
                raise Stopped
            t0 = time.monotonic()
            try:
                proposal = agent.propose(ctx)
                break
            except AgentError as e:
                if e.usage and (e.usage.input_tokens or e.usage.output_tokens or e.usage.cost_usd):
                    self.ledger.charge(guess, e.usage)
                if e.fatal:
                    raise
                same = same + 1 if str(e) == last and not e.transient else 1
                last = str(e)
                if same >= AGENT_SAME_ERRORS:
                    raise AgentError(f"{e} (the same error {same} times in a row, which waiting will not mend: "
                                     "fix its cause, then resume)", fatal=True) from e
                self.message(f"agent error (waiting {wait:.0f}s, then trying again): {e}")
                vcs.detach_at(checkout, parent)
                (self.sleep or self.stop.wait)(wait)
        if self.stop.is_set():
            raise Stopped
        agent_seconds = time.monotonic() - t0
        files, rejection = self.gather(proposal, checkout, before)
        rejection = rejection or self.check(proposal, best_source, ctx.files, files)
        files = {**ctx.files, **{f: t for f, t in files.items() if self._editable(f)}}  # complete, as proposed
        rec = self.ledger.add(
            number, attempt, _one_line(proposal.description), proposal.train_py, parent,
            rationale=proposal.rationale, agent=proposal.by or agent.name, agent_seconds=agent_seconds,
            input_tokens=proposal.usage.input_tokens, output_tokens=proposal.usage.output_tokens,
            cost_usd=proposal.usage.cost_usd, files=files, worker=worker, device=device,
            diff=vcs.diff_files({EDITABLE: best_source, **ctx.files}, {EDITABLE: proposal.train_py, **files}))
        if rejection:
            vcs.detach_at(checkout, parent)
            return self.ledger.finish(rec.id, status="rejected", outcome="rejected", reason=rejection, evidence={})
        return rec

    def context(self, checkout: Path, parent: str, number: int | None, failure: Failure | None) -> Context:
        """What the agent is given: the best (`parent`) train.py, the history, the experiments in flight."""
        guess = number or max((e.number for e in self.ledger.experiments()), default=0) + 1
        task = self.task
        own = {} if task is None else {
            "metric": task.metric.name, "goal": task.metric.goal, "task": task.name,
            "fixed_work": task.time_budget is None, "time_budget": task.time_budget or task.timeout,
            "max_seq_len": None, "token_budget": None, "harness_surface": _budget_surface()}
        return Context(**{**dict(
            program=_read(checkout / (task.program if task else "program.md")), train_py=self.ledger.source_at(parent),
            files=self.ledger.files_at(parent),
            harness_surface=harness_surface(), history=self.history(), best_val_bpb=self.ledger.best_val(),
            time_budget=self.settings.time_budget, token_budget=self.settings.token_budget or None,
            failure=failure, workspace=checkout, experiment=guess, max_seq_len=self.settings.max_seq_len,
            in_flight=self.in_flight(), noise_sd=self.ledger.noise_sigma()), **own})

    def _editable(self, name: str) -> bool:
        return self.task is not None and name != EDITABLE and self.task.is_editable(name)

    def gather(self, proposal: Proposal, checkout: Path, before: set[str]) -> tuple[dict[str, str], str]:
        """The other files the proposal changes: those it names, and those the agent changed in its checkout (a
        command agent); and why they cannot be (a name that is not one path's one spelling, a link, a fixed file, a
        path outside the workspace, a deleted file). Nothing read through a link is returned: the record (and the
        next prompt) shows what is returned, refused or not."""
        files = dict(proposal.files)
        outside = sorted(f for f in files if f.startswith("/") or ".." in f.split("/") or f == EDITABLE)
        if outside:
            return {}, f"the proposal names file(s) {', '.join(outside)}: only paths inside the workspace, besides " \
                       f"{EDITABLE}, may be given as other files"
        found = [e[3:] for e in sorted(set(vcs.status_porcelain(checkout)) - before)]
        found = [n for n in found if n != EDITABLE and n not in files]
        for name in (*sorted(files), *found):  # a command agent's files too: a newline, a zero-width space
            why = _name_problem(name)
            if why:
                return {}, why
        for name in (EDITABLE, *files, *found):  # a link would have the loop read what the agent may not (labels)
            if through_link(checkout, name):
                return {}, f"the agent made {name} a symbolic link: a proposal's files must be plain files"
        sizes = {**{n: len(t.encode(errors="replace")) for n, t in files.items()},
                 **{n: (checkout / n).stat().st_size for n in found if (checkout / n).is_file()},
                 EDITABLE: len(proposal.train_py.encode(errors="replace"))}
        big = sorted(n for n, size in sizes.items() if size > MAX_FILE_BYTES)
        if big:  # the journal keeps every record's files in full, and every prompt shows them
            return {}, (f"{', '.join(big)} is {sizes[big[0]] / 2**20:.1f} MiB: an editable file may hold at most "
                        f"{MAX_FILE_BYTES // 2**20} MiB (code and configs; declare data `readable` instead)")
        for name in found:
            if not (checkout / name).is_file():
                return files, f"the agent deleted {name}: a proposal may change files, not delete them"
            try:
                files[name] = (checkout / name).read_text()
            except (OSError, UnicodeDecodeError) as e:
                return files, f"the agent left {name} unreadable as text ({e})"
        for name in sorted(files):
            path = checkout / name
            if path.is_dir():
                return {}, f"the proposal names {name}, which is a directory: name the files in it"
            parent = next((q for q in path.relative_to(checkout).parents if (checkout / q).is_file()), None)
            if parent is not None:
                return {}, f"the proposal names {name}, but {parent.as_posix()} is a file: a file holds no files"
        bad = sorted(f for f in files if not self._editable(f))
        if bad and self.task is not None:  # the evaluator, its data, any fixed file: refused, with the reason
            return files, refused(self.task, {f: "" for f in bad})
        if bad:
            return files, f"the agent changed files other than {EDITABLE}: {', '.join(bad)}"
        ignored = vcs.ignored(checkout, sorted(files))
        if ignored:  # results.tsv, run.log, __pycache__/, .autoresearch/: git add would refuse them in the commit
            return {}, f"the proposal names {', '.join(ignored)}, which git ignores (.gitignore): no commit can " \
                       "hold it; name another path"
        return files, ""

    def check(self, proposal: Proposal, best_source: str, best_files: dict[str, str], files: dict[str, str]) -> str:
        """Why the proposal cannot run ('' if it can): something must change, and every Python file it changes
        must parse and import only what is allowed."""
        changed = {f: t for f, t in files.items() if best_files.get(f) != t}
        if proposal.train_py == best_source and not changed:
            return f"no change: the proposed {EDITABLE} is the current best"
        problems: list[str] = []
        # what the task allows, what the best imports, and the editable modules themselves (a new helper too)
        own = (*(self.task.allowed_imports if self.task else ()), *guard.imported_modules(best_source),
               *(Path(f).parts[0].removesuffix(".py") for f in {**best_files, **files} if f.endswith(".py")))
        for name, text, before in ((EDITABLE, proposal.train_py, best_source),
                                   *((f, t, best_files.get(f, "")) for f, t in sorted(changed.items()))):
            if name != EDITABLE and not name.endswith(".py"):
                continue
            try:
                ast.parse(text, filename=name)
            except (SyntaxError, ValueError) as e:
                return f"{name} does not parse: {getattr(e, 'msg', e)} (line {getattr(e, 'lineno', '?')})"
            found = (guard.check_source(text, self.settings.allowed_imports) if self.task is None
                     else guard.check_task_source(text, (*own, *guard.imported_modules(before))))
            problems += [p if name == EDITABLE else f"{name}: {p}" for p in found]
        if not proposal.description.strip():
            return "the proposal has no description"
        return "; ".join(problems)

    def history(self) -> tuple[HistoryEntry, ...]:
        return tuple(
            HistoryEntry(number=e.number, status=e.status or "crash", description=e.description, val_bpb=e.val_bpb,
                         memory_gb=e.memory_gb, reason=e.reason if e.status in ("crash", "rejected") else "",
                         diff=e.diff, train_py=e.train_py, agent=e.agent, files=e.files)
            for e in self.ledger.experiments(done_only=True) if e.status is not None
        )

    def in_flight(self) -> tuple[InFlight, ...]:
        return tuple(InFlight(number=e.number, description=e.description, diff=e.diff, train_py=e.train_py,
                              agent=e.agent, files=e.files) for e in self.ledger.in_flight())


def _name_problem(name: str) -> str:
    """Why `name` is not a file's one name ('' if it is): one path has one spelling in the record, the commit and
    the run (`./m.py` beside `m.py` would be two files in the journal and one in git, the last written winning)."""
    if any(not c.isprintable() for c in name):
        return f"the proposal names {name!r}, which holds a control character: name files by their plain paths"
    if len(name.encode()) > MAX_PATH or any(len(part.encode()) > MAX_NAME for part in name.split("/")):
        return f"the proposal names {name[:80]}..., a path too long for the filesystem (a name of at most " \
               f"{MAX_NAME} bytes, a path of {MAX_PATH}): name a shorter one"
    if ".git" in name.lower().split("/"):
        return f"the proposal names {name}, inside a .git directory: git keeps no such file; name another path"
    canonical = posixpath.normpath(name)
    if canonical != name or not name:
        return f"the proposal names {name!r}, a second spelling of a path: give it as {canonical}"
    return ""


def _backoff():
    yield from AGENT_BACKOFF
    while True:
        yield AGENT_BACKOFF[-1]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200] or "unnamed change"


def _budget_surface() -> str:
    """What a task's script may import from autoresearch: the time budget's one-line helper."""
    import autoresearch.harness.budget as budget

    return "from autoresearch.harness import budget\n" + (budget.__doc__ or "").strip() + "\n"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
