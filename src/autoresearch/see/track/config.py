"""Which trackers a run logs to, and where: `--track`, AUTORESEARCH_TRACK, or `[track]` in autoresearch.toml.

    [track]
    trackers = ["mlflow", "tensorboard"]       # what `run` logs to when --track is not given
    mlflow_uri = "http://127.0.0.1:5000"       # default: MLFLOW_TRACKING_URI, else .autoresearch/mlflow.db
    mlflow_experiment = "my-research"          # default: autoresearch/<the workspace's name>
    wandb_project = "my-research"              # default: WANDB_PROJECT, else the workspace's name
    wandb_entity = "my-team"                   # default: WANDB_ENTITY, else your default entity
    wandb_mode = "offline"                     # default: WANDB_MODE, else online
    wandb_dir = "/data/wandb"                  # default: .autoresearch/wandb
    tensorboard_dir = "/data/tb"               # default: .autoresearch/tensorboard
    timeout = 120                              # seconds one call may take before that tracker is dropped

The table is the user's, beside the fixed `[workspace]` settings: it changes where records go, never what is
measured. Credentials never go here: each tracker reads its own (MLFLOW_TRACKING_*, WANDB_API_KEY, ~/.netrc).
"""

from __future__ import annotations

import importlib
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from autoresearch.see.track import TRACKERS, Tracker, TrackError
from autoresearch.settings import SETTINGS_FILE
from autoresearch.workspace import RUN_DIR

TRACK_ENV = "AUTORESEARCH_TRACK"
DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class TrackConfig:
    trackers: tuple[str, ...] = ()
    mlflow_uri: str = ""
    mlflow_experiment: str = ""
    wandb_project: str = ""
    wandb_entity: str = ""
    wandb_mode: str = ""
    wandb_dir: str = ""
    tensorboard_dir: str = ""
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def load(cls, workspace: Path) -> TrackConfig:
        """The workspace's `[track]` table (none: the defaults)."""
        path = workspace / SETTINGS_FILE
        try:
            table = tomllib.loads(path.read_text()).get("track", {})
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise TrackError(f"cannot read {path}: {e}") from e
        if not isinstance(table, dict):
            raise TrackError(f"{path}: `track` must be a table ([track])")
        known = {f.name for f in fields(cls)}
        unknown = set(table) - known
        if unknown:
            raise TrackError(f"{path}: unknown key(s) under [track]: {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(known))}")
        values = dict(table)
        if "trackers" in values:
            if not isinstance(values["trackers"], list):
                raise TrackError(f'{path}: [track] trackers must be a list, e.g. trackers = ["mlflow"]')
            values["trackers"] = parse_names(values["trackers"])
        for name in known - {"trackers", "timeout"}:
            if name in values and not isinstance(values[name], str):
                raise TrackError(f"{path}: [track] {name} must be a string")
        if "timeout" in values:
            timeout = values["timeout"]
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise TrackError(f"{path}: [track] timeout must be a positive number of seconds")
            values["timeout"] = float(timeout)
        return cls(**values)

    def with_trackers(self, names: tuple[str, ...]) -> TrackConfig:
        return replace(self, trackers=names)

    def local(self, workspace: Path, value: str, default: str) -> Path:
        """A directory of this config (relative ones from the workspace), or the default under .autoresearch/."""
        path = Path(value).expanduser() if value else workspace / RUN_DIR / default
        return (path if path.is_absolute() else workspace / path).resolve()


def make_tracker(name: str, workspace: Path, config: TrackConfig) -> Tracker:
    """The tracker `name`, checked (its package is installed, its store is where agents cannot read it, its
    credentials exist) without importing its client: that happens in open(), beside the loop."""
    if name not in TRACKERS:
        raise TrackError(f"unknown tracker {name!r}: choose one of {', '.join(TRACKERS)}")
    module, cls, _ = TRACKERS[name]
    return getattr(importlib.import_module(module), cls)(workspace, config)


def parse_names(values) -> tuple[str, ...]:
    """Tracker names from flags, the environment or the table: `mlflow,wandb` and repeats alike; `none` is none."""
    names: list[str] = []
    for value in values:
        for name in str(value).replace(",", " ").split():
            name = name.strip().lower()
            if name == "none":
                continue
            if name not in TRACKERS:
                raise TrackError(f"unknown tracker {name!r}: choose from {', '.join(TRACKERS)} (or none)")
            if name not in names:
                names.append(name)
    return tuple(names)


def from_environment() -> tuple[str, ...] | None:
    """AUTORESEARCH_TRACK, when set (`none` or empty: no tracker)."""
    value = os.environ.get(TRACK_ENV)
    return None if value is None else parse_names([value])


def check_place(workspace: Path, path: Path, what: str) -> None:
    """A tracker's local files hold the held-out test figures: not in the workspace where agents work, unless in
    .autoresearch/ (hidden from command agents). Outside the workspace they are hidden from command agents too
    (Tracker.private_paths)."""
    ws = workspace.resolve()
    records = ws / RUN_DIR
    inside = path == ws or ws in path.parents
    if inside and not (path == records or records in path.parents):
        raise TrackError(f"{what} {path} lies in the workspace, where agents work and can read it (it holds the "
                         f"held-out test figures): put it under {records} (the default) or outside the workspace")
