"""The prompt every LLM and command agent sees, and the parser for the reply.

`build_prompt(ctx)` is a pure function of the Context: the same context gives the same text, so a run can be
replayed and prompt changes can be reviewed as diffs. It never shows a held-out test figure (the Context has none).

A reply is accepted in two forms. The full file (always accepted): a `Description: ...` line and the complete new
train.py in one ```python block. The edit form (cheaper for small changes): SEARCH/REPLACE blocks applied to the
current file. `parse_reply` turns either into the complete new source or raises a ReplyError whose message is
written for the model, so the agent can send it back as a correction.

A task may declare more editable files than train.py (Context.files): the prompt shows each in full, and an edit
block preceded by a line holding only a file's name (`model.py`) applies to that file; `parse_reply_files` returns
the files a reply changes beside the new train.py. The complete-file form is train.py's.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from autoresearch.agents.base import Context, HistoryEntry
from autoresearch.agents.history import compact

SYSTEM_PROMPT = ("You are an autonomous machine-learning researcher. You improve a small GPT pretraining script one "
                 "experiment at a time and answer exactly in the requested format.")


def system_prompt(ctx: Context | None = None) -> str:
    """The system prompt: the GPT task's, or a researcher's task's (its name and metric)."""
    if ctx is None or not ctx.task:
        return SYSTEM_PROMPT
    return (f"You are an autonomous machine-learning researcher. You improve the training script of the task "
            f"{ctx.task!r} one experiment at a time, judged on {ctx.metric} ({ctx.direction}), and answer exactly in "
            "the requested format.")

MAX_HISTORY_ROWS = 150  # beyond this the table keeps every kept row and the most recent others
RECENT_DIFFS = 3  # the last few experiments are also shown as diffs, so near misses can be built on
DIFF_LINES = 60  # per diff shown
ERROR_TAIL_LINES = 40  # of a failed run's output
DEFAULT_DESCRIPTION = "unnamed change"
MAX_DESCRIPTION = 200

STATUS_LEGEND = ("keep = beat the best and was kept; discard = ran but did not beat the best; crash = failed while "
                 "running; rejected = refused before running")


class ReplyError(ValueError):
    """The reply cannot be turned into a train.py. The message is addressed to the model."""


# ----------------------------------------------------------------------------------------------------------------
# Building the prompt


def base_source(ctx: Context) -> str:
    """The file a reply edits: the failed attempt when fixing one, otherwise the current best train.py."""
    return ctx.failure.train_py if ctx.failure and ctx.failure.train_py else ctx.train_py


def base_files(ctx: Context) -> dict[str, str]:
    """The other editable files a reply edits: the failed attempt's when fixing one, otherwise the best's."""
    return {**ctx.files, **(ctx.failure.files if ctx.failure else {})}


def build_prompt(ctx: Context) -> str:
    """The whole prompt as one text, ending with the reply format (command agents append their own instead)."""
    parts = [
        _task(ctx),
        _section("The researcher's instructions (program.md)", ctx.program.strip() or "(empty)"),
        _section("Harness surface (read-only: what train.py may import from autoresearch.harness)",
                 ctx.harness_surface.strip() or "(not given)"),
        _section("Results so far", _results(ctx)),
    ]
    if ctx.notes:
        parts.append(_section("What the tuner learned", ctx.notes))
    if ctx.in_flight:
        parts.append(_section("Experiments running now (other workers; do not propose these ideas again)",
                              _in_flight(ctx)))
    if ctx.failure is None:
        parts.append(_section("Current train.py (the best so far; your change applies to this file)",
                              _fenced(ctx.train_py, "python")))
    else:
        parts.append(_failure(ctx))
    failed = ctx.failure.files if ctx.failure and ctx.failure.files else {}
    for name, text in sorted(base_files(ctx).items()):
        how = "as in the failed attempt" if failed else "as the best has it"
        parts.append(_section(f"Current {name} (editable too, {how}; name it above an edit to change it)",
                              _fenced(text, "python" if name.endswith(".py") else "")))
    parts.append(_reply_format(ctx))
    return "\n\n".join(parts) + "\n"


def correction_message(error: ReplyError | str) -> str:
    """The follow-up turn after a reply that could not be used."""
    return (f"Your reply could not be used: {error}\n\n"
            "Answer again, following the reply format exactly: a line `Description: <one line>`, then EITHER the "
            "complete new train.py in exactly one ```python block, OR SEARCH/REPLACE edits whose SEARCH parts each "
            "match the current train.py exactly once.")


def _task(ctx: Context) -> str:
    if ctx.task:
        return _own_task(ctx)
    number = f" This is experiment #{ctx.experiment}." if ctx.experiment else ""
    budget = (f"Every experiment trains on the same fixed budget of {ctx.token_budget:,} training tokens (the loader "
              "ends there; a faster step buys nothing, a better use of each token does)"
              if ctx.token_budget else
              f"Every experiment trains for the same fixed wall-clock budget of {ctx.time_budget:.0f} seconds")
    return f"""# Task
You improve train.py, a small GPT pretraining script, to lower val_bpb: validation bits per byte, lower is better.
{budget}; then the fixed harness measures val_bpb on held-out text. A change is kept only if it beats the best
val_bpb so far, otherwise it is reverted.{number}

Rules:
- Change only train.py. It may import autoresearch.harness (listed below) and what is installed: torch, numpy and
  the standard library.
- Do not change how val_bpb is measured: the harness computes it, and numbers printed by train.py are not trusted.
- Keep the summary block train.py prints at the end (`---`, then `key: value` lines).
- Test one idea per experiment so its effect can be told apart. Mind the budget and the memory of the device.
- Do not repeat an idea from the results below unless you change it in a way you explain.
- A crash wastes a run: keep the code runnable and the tensor shapes consistent."""


def _own_task(ctx: Context) -> str:
    """The task section for a researcher's own task (task.toml): its metric, its direction, its budget."""
    number = f" This is experiment #{ctx.experiment}." if ctx.experiment else ""
    aim = "raise" if ctx.sign < 0 else "lower"
    budget = ("The script decides how much it trains (fixed work) under a hard timeout" if ctx.fixed_work else
              f"Every experiment trains for the same wall-clock budget of {ctx.time_budget:.0f} seconds, clocked from "
              "outside (`budget.over()` from autoresearch.harness turns True when it runs out)")
    return f"""# Task
You improve train.py, the training script of the task {ctx.task!r}, to {aim} {ctx.metric} ({ctx.goal}: {ctx.direction}).
{budget}; then the task's fixed evaluator, a process of its own, computes {ctx.metric} from what the script wrote to
its output directory ($AUTORESEARCH_OUTPUT). A change is kept only if it beats the best {ctx.metric} so far,
otherwise it is reverted.{number}

Rules:
- Change only {_editable(ctx)}. Every other file (the evaluator, the data, task.toml) is fixed: a change to one is
  refused.
- The evaluation's labels are hidden from the script: it cannot read them, and numbers it prints decide nothing.
- Keep writing the predictions the evaluator reads, in the same files and format.
- Test one idea per experiment so its effect can be told apart.
- Do not repeat an idea from the results below unless you change it in a way you explain.
- A crash wastes a run: keep the code runnable."""


def _editable(ctx: Context) -> str:
    if not ctx.files:
        return "train.py"
    return "train.py and the other editable files shown below (" + ", ".join(sorted(ctx.files)) + ")"


def _section(title: str, body: str) -> str:
    return f"## {title}\n{body}"


def _fenced(text: str, lang: str = "") -> str:
    fence = "````" if "```" in text else "```"  # a longer fence survives backticks inside the text
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _results(ctx: Context) -> str:
    if ctx.best_val_bpb is None:
        head = f"No experiment has a {ctx.metric} yet."
    else:
        head = f"Best {ctx.metric} so far: {ctx.best_val_bpb:.6f} ({ctx.direction})."
    if not ctx.history:
        return head + "\nNo experiments yet in this run."
    lines = [head, f"Status: {STATUS_LEGEND}.", "", compact(
        ctx.history, ctx.noise_sd, ctx.best_val_bpb, lambda rows: format_history(rows, metric=ctx.metric),
        metric=ctx.metric, sign=ctx.sign)]
    recent = [h for h in ctx.history if h.diff.strip()][-RECENT_DIFFS:]
    if recent:
        lines += ["", "Most recent changes in detail:"]
        for h in recent:
            lines += [f"#{h.number} ({h.status}) {_one_line(h.description)}", _fenced(_clip_lines(h.diff, DIFF_LINES),
                                                                                        "diff")]
    return "\n".join(lines)


def _in_flight(ctx: Context) -> str:
    lines = []
    for f in ctx.in_flight:
        lines.append(f"#{f.number} {_one_line(f.description)}" + (f" ({f.agent})" if f.agent else ""))
        if f.diff.strip():
            lines.append(_fenced(_clip_lines(f.diff, DIFF_LINES), "diff"))
    return "\n".join(lines)


def format_history(history: Sequence[HistoryEntry], max_rows: int = MAX_HISTORY_ROWS, metric: str = "val_bpb") -> str:
    """A compact markdown table of past experiments: number, status, val_bpb, memory, description, reason."""
    rows = list(history)
    omitted = 0
    if len(rows) > max_rows:  # keep every kept row (the path to the best file) and fill with the most recent
        kept = [h for h in rows if h.status == "keep"][-max_rows:]
        others = [h for h in rows if h.status != "keep"][-(max_rows - len(kept)):] if max_rows > len(kept) else []
        chosen = {id(h) for h in kept + others}
        omitted = len(rows) - len(chosen)
        rows = [h for h in rows if id(h) in chosen]
    table = [f"| # | status | {metric} | mem GB | description | reason |", "|---|---|---|---|---|---|"]
    for h in rows:
        bpb = f"{h.val_bpb:.6f}" if h.val_bpb is not None else "-"
        mem = f"{h.memory_gb:.1f}" if h.memory_gb is not None else "-"
        reason = _cell(h.reason, 120) if h.status in ("crash", "rejected") else ""
        table.append(f"| {h.number} | {h.status} | {bpb} | {mem} | {_cell(h.description, 160)} | {reason} |")
    if omitted:
        table.insert(0, f"({omitted} older experiments not shown)")
    return "\n".join(table)


def _failure(ctx: Context) -> str:
    f = ctx.failure
    assert f is not None
    tail = "\n".join(f.error_tail.rstrip().splitlines()[-ERROR_TAIL_LINES:]) or "(no output captured)"
    text = [
        "## Your previous attempt failed: fix it",
        f"Description: {_one_line(f.description)}",
        f"Outcome: {f.status}" + (f" ({_one_line(f.reason)})" if f.reason else ""),
        "Last lines of its output:",
        _fenced(tail),
        "Fix the problem so the idea can be tested. If the idea cannot work as written, propose the smallest variant "
        "of it that can, and say so in your rationale.",
    ]
    source = base_source(ctx)
    if source != ctx.train_py:
        diff = "".join(difflib.unified_diff(ctx.train_py.splitlines(keepends=True), source.splitlines(keepends=True),
                                            "best/train.py", "failed/train.py"))
        text += ["", "How the failed attempt differs from the best train.py:", _fenced(diff, "diff")]
    text += ["", "## The failed train.py (your reply applies to this file)", _fenced(source, "python")]
    return "\n".join(text)


def _reply_format(ctx: Context | None = None) -> str:
    aim = f"{'raise' if ctx.sign < 0 else 'lower'} {ctx.metric}" if ctx is not None else "lower val_bpb"
    return f"""## Reply format
Optionally start with a short rationale: what you change and why you expect it to {aim}.
Then a line

Description: <one line of at most ~80 characters saying what this experiment changes>

and then EITHER

(a) the complete new train.py in exactly one ```python block (the whole file, nothing elided), OR

(b) one or more edits to the current train.py, each written as
<<<<<<< SEARCH
<lines copied exactly from the current train.py, with enough context to be unique>
=======
<the lines that replace them>
>>>>>>> REPLACE

Every SEARCH part must match the current train.py exactly once, character for character, indentation included.
Form (b) is cheaper for small changes. Do not mix the two forms.{_other_files(ctx)}"""


def _other_files(ctx: Context | None) -> str:
    if ctx is None or not ctx.files:
        return ""
    names = ", ".join(sorted(ctx.files))
    return f"""
To edit another editable file ({names}), use form (b) and put the file's name alone on the line just before
`<<<<<<< SEARCH` (for example `{min(ctx.files)}`); its SEARCH parts must then match that file. An edit without a
name applies to train.py. Form (a) is for train.py only; with form (b) you may edit several files in one reply."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str, limit: int) -> str:
    text = _one_line(text).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip_lines(text: str, limit: int) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines if len(lines) <= limit else lines[:limit] + [f"... ({len(lines) - limit} more lines)"])


# ----------------------------------------------------------------------------------------------------------------
# Parsing the reply

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")
_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_DESCRIPTION = re.compile(r"^\s*(?:[-*>#]+\s*)?(?:\*\*|__)?description(?:\*\*|__)?\s*:\s*(.*)$", re.IGNORECASE)
_PYTHON = {"python", "py", "python3", ""}
_FILE_SUFFIX = re.compile(r"\.(py|toml|json|ya?ml|txt|md|cfg|ini|sh|csv|npy|npz)$", re.IGNORECASE)
_FILE_NAME = re.compile(r"^\s*(?:[#*>-]+\s*)?(?:file\s*:\s*)?[`*]*([\w][\w./-]*\.\w+)[`*:]*\s*$", re.IGNORECASE)
_ELIDED = re.compile(r"^\s*#.*(\.\.\.|…).*\b(unchanged|rest of|existing code|remaining code|as before|same as)\b",
                     re.IGNORECASE)


@dataclass
class _Block:
    lang: str
    lines: list[str]
    closed: bool


def parse_reply(text: str, current_train_py: str) -> tuple[str, str, str]:
    """(new train.py, one-line description, rationale) from a reply, or ReplyError saying what to fix."""
    train_py, _, description, rationale = parse_reply_files(text, current_train_py, {})
    return train_py, description, rationale


def parse_reply_files(text: str, current_train_py: str,
                      files: dict[str, str]) -> tuple[str, dict[str, str], str, str]:
    """(new train.py, the other editable files it changes (complete new texts), one-line description, rationale)
    from a reply, or ReplyError saying what to fix. `files`: the other editable files as they are now."""
    lines = text.splitlines()
    fenced = _fenced_blocks(lines)
    edits, edit_lines = _edit_blocks(lines, {"train.py", *files})
    in_fence = {i for _, span in fenced for i in span}
    prose = [line for i, line in enumerate(lines) if i not in in_fence and i not in edit_lines]
    description, rationale = _description(prose)
    changed: dict[str, str] = {}
    if edits:
        current = {"train.py": current_train_py, **files}
        for name in dict.fromkeys(name for name, _, _ in edits):
            changed[name] = _apply_edits(current[name], [(s, r) for n, s, r in edits if n == name], name)
        train_py = changed.pop("train.py", current_train_py)
    else:
        train_py = _full_file([b for b, _ in fenced], current_train_py)
    changed = {n: t for n, t in changed.items() if _normalized(t) != _normalized(files[n])}
    _check(train_py, current_train_py, changed)
    return train_py, changed, description, rationale


def _fenced_blocks(lines: list[str]) -> list[tuple[_Block, range]]:
    blocks: list[tuple[_Block, range]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m[1], i
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        closed = j < len(lines)
        blocks.append((_Block(m[2].lower(), lines[i + 1:j], closed), range(start, min(j, len(lines) - 1) + 1)))
        i = j + 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def _edit_blocks(lines: list[str], names: set[str]) -> tuple[list[tuple[str, list[str], list[str]]], set[int]]:
    """The SEARCH/REPLACE edits as (file, search, replace), and the lines they take (a file's name line too)."""
    edits: list[tuple[str, list[str], list[str]]] = []
    used: set[int] = set()
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        start, search, replace, j = i, [], [], i + 1
        name = _FILE_NAME.match(lines[i - 1]) if i > 0 and i - 1 not in used else None
        name = name if name and (name[1] in names or _FILE_SUFFIX.search(name[1])) else None  # v0.5 is prose
        if name and name[1] not in names:
            raise ReplyError(f"edit {len(edits) + 1} names {name[1]}, which is not an editable file; the editable "
                             f"files are {', '.join(sorted(names))}")
        if name:
            start -= 1
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            if _SEARCH.match(lines[j]) or _REPLACE.match(lines[j]):
                break
            search.append(lines[j])
            j += 1
        if j >= len(lines) or not _DIVIDER.match(lines[j]):
            raise ReplyError(f"edit {len(edits) + 1} has `<<<<<<< SEARCH` but no `=======` line after its SEARCH part")
        j += 1
        while j < len(lines) and not _REPLACE.match(lines[j]):
            if _SEARCH.match(lines[j]):
                break
            replace.append(lines[j])
            j += 1
        if j >= len(lines) or not _REPLACE.match(lines[j]):
            raise ReplyError(f"edit {len(edits) + 1} is not closed with a `>>>>>>> REPLACE` line "
                             "(if the reply was cut off, send fewer or smaller edits)")
        edits.append((name[1] if name else "train.py", search, replace))
        used.update(range(start, j + 1))
        i = j + 1
    return edits, used


def _apply_edits(source: str, edits: list[tuple[list[str], list[str]]], name: str = "train.py") -> str:
    lines = source.splitlines()
    for n, (search, replace) in enumerate(edits, 1):
        if not any(s.strip() for s in search):
            raise ReplyError(f"edit {n} has an empty SEARCH part; copy the lines to replace from the current {name}")
        at = _find(lines, search, exact=True) or _find(lines, search, exact=False)  # tolerate trailing spaces
        if not at:
            raise ReplyError(f"edit {n}: the SEARCH text was not found in the current {name} (it starts with "
                             f"{search[0].strip()!r}). Copy the lines exactly, indentation included, from the "
                             f"current {name}.")
        if len(at) > 1:
            raise ReplyError(f"edit {n}: the SEARCH text matches {len(at)} places in {name} (lines "
                             f"{', '.join(str(i + 1) for i in at)}); include more surrounding lines so it matches "
                             "exactly once.")
        lines[at[0]:at[0] + len(search)] = replace
    return "\n".join(lines) + "\n"


def _find(lines: list[str], search: list[str], exact: bool) -> list[int]:
    norm = (lambda s: s) if exact else str.rstrip
    want = [norm(s) for s in search]
    k = len(want)
    return [i for i in range(len(lines) - k + 1) if [norm(s) for s in lines[i:i + k]] == want]


def _full_file(blocks: list[_Block], current: str) -> str:
    candidates = [b for b in blocks if b.lang in _PYTHON]
    if not candidates:
        raise ReplyError("the reply has neither a ```python block with the complete train.py nor "
                         "`<<<<<<< SEARCH` / `=======` / `>>>>>>> REPLACE` edits")
    if len(candidates) > 1:
        complete = [b for b in candidates if _looks_complete(b, current)]
        if len(complete) != 1:
            raise ReplyError(f"the reply has {len(candidates)} python blocks and {len(complete)} of them look like "
                             "a complete train.py; send the complete file in exactly one ```python block, or use "
                             "SEARCH/REPLACE edits")
        candidates = complete
    block = candidates[0]
    if not block.closed:
        raise ReplyError("the ```python block is not closed, so the reply was probably cut off; send the complete "
                         "file again, or use SEARCH/REPLACE edits, which are shorter")
    if not _looks_complete(block, current):
        raise ReplyError(f"the python block has {len(block.lines)} lines but the current train.py has "
                         f"{len(current.splitlines())}: it looks like an excerpt. Send the complete file, or use "
                         "SEARCH/REPLACE edits for a small change")
    current_lines = set(current.splitlines())
    elided = [line for line in block.lines if _ELIDED.match(line) and line not in current_lines]
    if elided:
        raise ReplyError(f"the file elides code ({elided[0].strip()!r}); write out the complete train.py, or use "
                         "SEARCH/REPLACE edits to change only part of it")
    return "\n".join(block.lines).rstrip() + "\n"


def _looks_complete(block: _Block, current: str) -> bool:
    return len(block.lines) >= max(5, 0.3 * len(current.splitlines()))


def _check(train_py: str, current: str, files: dict[str, str] | None = None) -> None:
    if _normalized(train_py) == _normalized(current) and not files:
        raise ReplyError("no change: the new train.py is identical to the current one; propose an actual change")
    for name, source in {"train.py": train_py, **{n: t for n, t in (files or {}).items() if n.endswith(".py")}}.items():
        try:
            compile(source, name, "exec")
        except SyntaxError as e:
            where = f" at line {e.lineno}" if e.lineno else ""
            line = f": {e.text.strip()!r}" if e.text and e.text.strip() else ""
            raise ReplyError(f"the new {name} is not valid Python ({e.msg}{where}{line})") from None
        except ValueError as e:  # e.g. a NUL byte
            raise ReplyError(f"the new {name} is not valid Python ({e})") from None


def _normalized(source: str) -> list[str]:
    return [line.rstrip() for line in source.strip().splitlines()]


def _description(prose: list[str]) -> tuple[str, str]:
    description = ""
    rest = list(prose)
    for i, line in enumerate(prose):
        if m := _DESCRIPTION.match(line):
            description = _clean_description(m[1])
            drop = [i]
            if not description and i + 1 < len(prose):  # "Description:" with the text on the next line
                description = _clean_description(prose[i + 1])
                drop.append(i + 1)
            rest = [x for j, x in enumerate(prose) if j not in drop]
            break
    rationale = re.sub(r"\n{3,}", "\n\n", "\n".join(rest)).strip()
    if not description:
        first = next((line for line in rationale.splitlines() if line.strip()), "")
        description = _clean_description(re.sub(r"^\s*[-*>#]+\s*", "", first)) or DEFAULT_DESCRIPTION
    return description, rationale


def _clean_description(text: str) -> str:
    text = _one_line(text).strip("* \"'")
    if len(text) > MAX_DESCRIPTION:  # results.tsv wants one short line; cut at a word
        text = text[:MAX_DESCRIPTION - 3].rsplit(" ", 1)[0] + "..."
    return text
