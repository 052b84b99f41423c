"""Resuming a run after any stop: Ctrl-C, a limit, an agent error, kill -9 or a power cut.

The journal is the record. Git and results.tsv are made to agree with it: the branch is reset to the best kept
commit, and every experiment the journal shows unfinished (one per worker that was busy) is run again from its
recorded proposal; the workers' checkouts are cleaned when the workers start (loop/scheduler.py).
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
    pending = loop.journal.all_unfinished(loop.tag)
    for rec in pending:
        if rec.run_dir:  # a run orphaned by our death must not train on beside the next
            for run_dir in Path(rec.run_dir).parent.glob(Path(rec.run_dir).name + "*"):
                kill_stale_group(run_dir)
    best = loop.best_commit()
    if vcs.head(loop.ws) != best or vcs.status_porcelain(loop.ws):
        vcs.reset_hard(loop.ws, best)
    notes = results.publish(loop.journal, loop.tag, loop.ws)
    notes += [f"resume: experiment {rec.number} ({rec.description}) was interrupted ({rec.state}); running it again"
              for rec in pending]
    return notes
