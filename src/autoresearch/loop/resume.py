"""Resuming a run after any stop: Ctrl-C, a limit, an agent error, kill -9 or a power cut.

The journal is the record. Git and results.tsv are made to agree with it: the branch is reset to the best kept
commit, and an experiment the journal shows unfinished is run again from its recorded proposal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.loop import results, vcs
from autoresearch.run.supervisor import kill_stale_group

if TYPE_CHECKING:
    from autoresearch.loop.core import Loop


def resume(loop: Loop) -> list[str]:
    """Check out the run's branch and reconcile; returns what the user should be told."""
    vcs.reset_hard(loop.ws, "HEAD")  # an agent may have been editing train.py when we died
    vcs.checkout(loop.ws, loop.branch)
    loop.journal.update_run(loop.tag, state="running", stop_reason="")
    return reconcile(loop)


def reconcile(loop: Loop) -> list[str]:
    """Make git and results.tsv agree with the journal after any interruption."""
    pending = loop.journal.unfinished(loop.tag)
    if pending is not None and pending.run_dir:
        kill_stale_group(Path(pending.run_dir))  # a run orphaned by our death must not train on beside the next
    best = loop.best_commit()
    if vcs.head(loop.ws) != best or vcs.status_porcelain(loop.ws):
        vcs.reset_hard(loop.ws, best)
    notes = results.publish(loop.journal, loop.tag, loop.ws)
    if pending is not None:
        notes.append(f"resume: experiment {pending.number} ({pending.description}) was interrupted "
                     f"({pending.state}); running it again")
    return notes
