"""`autoresearch track --replay`: a run's journal sent to trackers afterwards (a run done offline, a tracker that
was down), and the catching up every live session starts with.

Both send what records.py builds from the journal, skipping the experiments a tracker already holds whole, so a
replay after live logging adds nothing, and one after a failed or missing live logging fills the gaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.loop.journal import Journal
from autoresearch.see.track import Tracker
from autoresearch.see.track.records import Entry, Research, entries, research


@dataclass
class Counts:
    """What one tracker got of a run, for the line the user sees at the end."""

    offered: int = 0  # experiments given to the tracker
    sent: int = 0
    known: int = 0  # held already (sent live, or by an earlier replay)
    errors: int = 0  # calls that raised
    dropped: int = 0  # never tried: the tracker hung, or fell too far behind
    first_error: str = ""

    @property
    def missing(self) -> int:
        return self.offered - self.sent - self.known

    def failure(self, e: BaseException) -> bool:
        """Count a failed call; True for the first one (the one the user is shown)."""
        self.errors += 1
        if self.first_error:
            return False
        self.first_error = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
        return True


def read_run(journal: Journal, tag: str, workspace: Path) -> tuple[Research, list[Entry]]:
    """The research run and every decided experiment of `tag`, in decision order."""
    run = journal.run(tag)
    if run is None:
        raise FileNotFoundError(f"no run tagged {tag!r}; see `autoresearch status --all`")
    return (research(run, journal.sessions(tag), workspace.resolve().name),
            entries(run, journal.experiments(tag, done_only=True)))


def catch_up(tracker: Tracker, run: Research, backlog: list[Entry], counts: Counts,
             on_error: Callable[[BaseException], None]) -> bool:
    """Open the research run and send what the tracker lacks of `backlog`. False when the tracker could not be
    opened (then nothing was sent)."""
    try:
        tracker.open(run)
        have = tracker.known(run)
    except Exception as e:  # noqa: BLE001 - whatever the client raises: counted and shown, never raised
        if counts.failure(e):
            on_error(e)
        return False
    for entry in {e.key: e for e in backlog}.values():  # once each, the latest copy (a retry may repeat one)
        if entry.key in have:
            counts.known += 1
        else:
            send(tracker, run, entry, counts, on_error)
    return True


def send(tracker: Tracker, run: Research, entry: Entry, counts: Counts,
         on_error: Callable[[BaseException], None]) -> None:
    try:
        tracker.send(run, entry)
        counts.sent += 1
    except Exception as e:  # noqa: BLE001
        if counts.failure(e):
            on_error(e)


def replay(journal: Journal, tag: str, workspace: Path, trackers: list[Tracker],
           say: Callable[[str], None]) -> dict[str, Counts]:
    """Send run `tag` to each tracker, one after the other; say how each went."""
    run, backlog = read_run(journal, tag, workspace)
    out: dict[str, Counts] = {}
    for tracker in trackers:
        counts = out[tracker.name] = Counts(offered=len(backlog))
        if catch_up(tracker, run, backlog, counts, lambda e: None):
            try:
                tracker.close(run)
            except Exception as e:  # noqa: BLE001
                counts.failure(e)
        say(summary(tracker, counts))
    return out


def summary(tracker: Tracker, counts: Counts) -> str:
    """One line: what a tracker got, where, and what to do about what it did not."""
    line = f"{tracker.name}: {counts.sent} experiment{'' if counts.sent == 1 else 's'} sent to {tracker.where()}"
    if counts.known:
        line += f", {counts.known} there already"
    why = []
    if counts.errors:
        why.append(f"{counts.errors} failed call{'' if counts.errors == 1 else 's'}, the first: {counts.first_error}")
    if counts.dropped:
        why.append(f"{counts.dropped} not tried: the tracker hung or fell behind")
    if counts.missing:
        line += (f"; {counts.missing} not sent ({'; '.join(why) or 'the tracker did not finish'}): "
                 f"`autoresearch track --replay --track {tracker.name}` sends what is missing")
    elif why:  # all there in the end, after the tracker came back
        line += f" (after {'; '.join(why)})"
    return line
