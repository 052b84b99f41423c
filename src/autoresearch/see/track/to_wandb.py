"""Weights & Biases (`--track wandb`, the extra `wandb`): the research run is a W&B group, each experiment a run.

Where: project `wandb_project` under [track] (else WANDB_PROJECT, else the workspace's name), entity
`wandb_entity` (else WANDB_ENTITY, else your default), mode `wandb_mode` (else WANDB_MODE, else online). Offline,
runs stay in `wandb_dir` (default .autoresearch/wandb) until `wandb sync` uploads them; online, W&B keeps its local
copy there too. The key is W&B's own (WANDB_API_KEY or `wandb login`'s ~/.netrc), read in this process only.

An experiment's run has train.py's CAPS constants (and the agent, the number) as config; the training curve as
history (`train/loss` at each step); val and test, the evidence, cost, steps and tokens/s, the decision and its
reasons in the summary; train.py, the diff and the error tail as an artifact. A run of job type `research` in the
group carries the best-so-far (`best_val_bpb`, one point per decision). Run ids come from the journal, so a replay
writes the same runs (`wandb sync` then merges them by id). W&B captures no console, git state or system metrics
here: the terminal belongs to the loop's live view.
"""

from __future__ import annotations

import netrc
import os
import re
from pathlib import Path
from urllib.parse import urlparse

from autoresearch.see.track import TrackError, need_package
from autoresearch.see.track.config import TrackConfig, check_place
from autoresearch.see.track.records import Entry, Research

MODES = ("online", "offline")
DEFAULT_HOST = "https://api.wandb.ai"
COMPLETE = "autoresearch.complete"  # beside a run's files/: the run was sent whole (its key inside)


class WandbTracker:
    name = "wandb"

    def __init__(self, workspace: Path, config: TrackConfig) -> None:
        need_package(self.name, "wandb")
        self.dir = config.local(workspace, config.wandb_dir, "wandb")
        check_place(workspace, self.dir, "the W&B directory")
        self.project = config.wandb_project or os.environ.get("WANDB_PROJECT") or workspace.resolve().name
        self.entity = config.wandb_entity or os.environ.get("WANDB_ENTITY") or None
        self.mode = (config.wandb_mode or os.environ.get("WANDB_MODE") or "online").lower()
        if self.mode not in MODES:
            raise TrackError(f"W&B mode {self.mode!r}: choose online or offline (wandb_mode under [track], or "
                             "WANDB_MODE)")
        if self.mode == "online" and not (os.environ.get("WANDB_API_KEY") or _netrc_key()):
            raise TrackError("W&B has no API key here: run `wandb login` (or set WANDB_API_KEY), or log offline "
                             'with wandb_mode = "offline" under [track] in autoresearch.toml (or WANDB_MODE=offline) '
                             f"and upload later with `wandb sync {self.dir / 'wandb'}/offline-run-*`")
        self.research_run = None

    def where(self) -> str:
        where = f"project {self.project}" + (f" of {self.entity}" if self.entity else "")
        if self.mode == "offline":
            return f"{where}, offline in {self.dir} (upload: wandb sync {self.dir / 'wandb'}/offline-run-*)"
        return where

    def private_paths(self) -> list[Path]:
        config_dir = Path(os.environ.get("WANDB_CONFIG_DIR") or "~/.config/wandb").expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        return [self.dir, _netrc_path(), config_dir / "settings"]

    # -- the research run ------------------------------------------------------------------------------------------

    def _init(self, research: Research, run_id: str, **kw):
        import wandb

        settings = wandb.Settings(console="off", silent=True, disable_git=True, save_code=False,
                                  disable_job_creation=True, x_disable_stats=True, x_disable_meta=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        return wandb.init(project=self.project, entity=self.entity, group=research.key, id=run_id, dir=str(self.dir),
                          mode=self.mode, settings=settings, reinit="create_new",
                          **({"resume": "allow"} if self.mode == "online" else {}), **kw)

    def open(self, research: Research) -> None:
        self.research_run = self._init(research, _run_id(f"{research.key}-research"), name=research.tag,
                                       job_type="research", config={**research.params, **research.tags})

    def known(self, research: Research) -> set[str]:
        root = self.dir / "wandb"
        return {marker.read_text() for marker in root.glob(f"*/{COMPLETE}")} if root.is_dir() else set()

    def close(self, research: Research) -> None:
        if self.research_run is None:
            return
        self.research_run.summary.update({"state": research.state, "stop_reason": research.stop_reason})
        failed = research.state == "stopped" and not research.stop_reason.startswith("reached")
        self.research_run.finish(exit_code=1 if failed else 0)
        self.research_run = None

    # -- one experiment --------------------------------------------------------------------------------------------

    def send(self, research: Research, entry: Entry) -> None:
        import wandb

        run = self._init(research, _run_id(entry.key), name=entry.title, job_type="experiment",
                         config={**entry.params, "number": entry.number, "attempt": entry.attempt},
                         tags=[entry.decision], notes=entry.tags.get("description", ""))
        try:
            steps: dict[int, dict[str, float]] = {}
            for name, points in entry.curve.items():
                for step, value in points:
                    steps.setdefault(step, {})[f"train/{name}"] = value
            for step in sorted(steps):
                run.log(steps[step], step=step)
            run.summary.update({**entry.metrics, **entry.tags})
            artifact = wandb.Artifact(f"experiment-{_run_id(entry.key)}", type="experiment")
            for name, text in entry.artifacts.items():
                with artifact.new_file(name, encoding="utf-8") as f:
                    f.write(text)
            run.log_artifact(artifact)
        finally:
            run.finish(exit_code=1 if entry.failed else 0)
        if entry.best.value is not None:
            self.research_run.log({research.best_name: entry.best.value}, step=entry.best.step)
        (Path(run.dir).parent / COMPLETE).write_text(entry.key)  # last: known() trusts only runs sent whole


def _run_id(key: str) -> str:
    """A W&B run id from a journal key: letters, digits, - and _ only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-")[:128]


def _netrc_path() -> Path:
    return Path(os.environ.get("NETRC") or "~/.netrc").expanduser()


def _netrc_key() -> str | None:
    """`wandb login`'s key for the W&B host, read without importing wandb."""
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST).hostname or ""
    try:
        found = netrc.netrc(str(_netrc_path())).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return found[2] if found else None
