"""The trackers researchers already look at: MLflow, Weights & Biases and TensorBoard (`run --track NAME`).

Each tracker is one module behind one small interface (Tracker), an optional extra using the tracker's own client
library; nothing imports mlflow, wandb or tensorboard until a tracker opens, and the loop never imports this room:
the `run` command hangs live logging on the ledger (lanes.py).

    config.py          which trackers, and where they write: --track, AUTORESEARCH_TRACK, [track] in autoresearch.toml;
                       make_tracker
    records.py         what a tracker receives, built from the journal alone (live logging and replay alike)
    lanes.py           live logging beside the loop: a thread and a bounded queue per tracker, failures counted
    replay.py          `autoresearch track --replay`: a finished run's journal, sent afterwards
    to_mlflow.py, to_wandb.py, to_tensorboard.py   the trackers
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from autoresearch.see.track.records import Entry, Research

# name -> (module, class, the extra that installs its client)
TRACKERS: dict[str, tuple[str, str, str]] = {
    "mlflow": ("autoresearch.see.track.to_mlflow", "MlflowTracker", "mlflow"),
    "wandb": ("autoresearch.see.track.to_wandb", "WandbTracker", "wandb"),
    "tensorboard": ("autoresearch.see.track.to_tensorboard", "TensorBoardTracker", "tensorboard"),
}


class TrackError(Exception):
    """A tracker cannot be used as configured; the message says how to fix it."""


class Tracker(Protocol):
    """One tracker. Its methods run in one thread at a time (its lane's, or the replay's) and may raise: the
    caller counts the failure and goes on."""

    name: str

    def where(self) -> str:
        """Where the records go, for people: a URI, a project, a directory."""

    def private_paths(self) -> list[Path]:
        """Local files that hold the test figures or the tracker's credentials: command agents never see them.
        The stores are created here if missing, so that they are hidden before they hold anything."""

    def open(self, research: Research) -> None:
        """Find or create the research run (a resumed run goes on in the same one)."""

    def known(self, research: Research) -> set[str]:
        """The keys of the entries the tracker holds complete already (a replay skips them)."""

    def send(self, research: Research, entry: Entry) -> None:
        """One experiment as a tracker run, and the research run's best-so-far after it."""

    def close(self, research: Research) -> None:
        """The research run's final state (stopped, and why); flush and let go of the client."""


def need_package(tracker: str, module: str) -> None:
    """A clear error, in milliseconds, when the tracker's client is not installed."""
    from importlib.util import find_spec

    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        extra = TRACKERS[tracker][2]
        raise TrackError(f"--track {tracker} needs the {module} package: pip install 'autoresearch[{extra}]'")
