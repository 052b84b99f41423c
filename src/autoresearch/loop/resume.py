"""Resuming a run after any stop: Ctrl-C, a limit, an agent error, kill -9 or a power cut.

The journal is the record. Git and results.tsv are made to agree with it: the branch is reset to the best kept
commit, and every experiment the journal shows unfinished (one per worker that was busy) is run again from its
recorded proposal; the workers' checkouts are cleaned when the workers start (loop/scheduler.py).
"""

from __future__ import annotations

from pathlib import Path

from autoresearch import vcs
from autoresearch.loop import results
from autoresearch.loop.ledger import Ledger
from autoresearch.run.supervisor import kill_stale_group


def resume(ledger: Ledger) -> list[str]:
    """Check out the run's branch and reconcile; returns what the user should be told."""
    vcs.reset_hard(ledger.ws, "HEAD")  # an agent may have been editing train.py when we died
    vcs.checkout(ledger.ws, ledger.branch)
    ledger.journal.update_run(ledger.tag, state="running", stop_reason="")
    return reconcile(ledger)


def reconcile(ledger: Ledger) -> list[str]:
    """Make git and results.tsv agree with the journal after any interruption."""
    pending = ledger.journal.all_unfinished(ledger.tag)
    for rec in pending:
        if rec.run_dir:  # a run orphaned by our death must not train on beside the next
            for run_dir in Path(rec.run_dir).parent.glob(Path(rec.run_dir).name + "*"):
                kill_stale_group(run_dir)
    best = ledger.best_commit()
    if vcs.head(ledger.ws) != best or vcs.status_porcelain(ledger.ws):
        vcs.reset_hard(ledger.ws, best)
    notes = results.publish(ledger.journal, ledger.tag, ledger.ws)
    notes += [f"resume: experiment {rec.number} ({rec.description}) was interrupted ({rec.state}); running it again"
              for rec in pending]
    return notes
