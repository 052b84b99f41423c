"""MLflow (`--track mlflow`, the extra `mlflow`): one parent run per research run, one child run per experiment.

Where: `mlflow_uri` under [track], else MLFLOW_TRACKING_URI, else a SQLite store in the workspace's .autoresearch/
(`mlflow ui --backend-store-uri sqlite:///.autoresearch/mlflow.db` shows it). The experiment is `mlflow_experiment`,
else autoresearch/<workspace>. Credentials are MLflow's own (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN,
~/.mlflow/credentials), read by its client in this process only.

A child run carries train.py's CAPS constants as params; the decision, agent and reasons as tags; val and test,
the policy's evidence, cost, steps and tokens/s as metrics; the training curve as step metrics (`train/loss`);
train.py, the diff and the error tail as artifacts. Its start and end times are the journal's, so a replay has the
same timeline. The parent's `best_val_bpb` is the best-so-far after each decision. MlflowClient is used throughout:
it takes explicit run ids, so nothing depends on mlflow's global "active run", which is per thread.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from autoresearch.see.track import TrackError, need_package
from autoresearch.see.track.config import TrackConfig, check_place
from autoresearch.see.track.records import Entry, Research

KIND, TAG, KEY, COMPLETE = "autoresearch.kind", "autoresearch.tag", "autoresearch.key", "autoresearch.complete"
PARENT = "mlflow.parentRunId"
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's UI shows GenAI traces first for experiments of no kind
BATCH = 1000  # MLflow's limit of entities in one log_batch
# A server that does not answer must cost seconds per call, not MLflow's default of 7 retries at 120 s each. Set
# only where the user has not chosen; train.py and command agents never see MLFLOW_* variables.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
CREDENTIAL_FILES = ("~/.mlflow/credentials", "~/.databrickscfg")


class MlflowTracker:
    name = "mlflow"

    def __init__(self, workspace: Path, config: TrackConfig) -> None:
        need_package(self.name, "mlflow")
        self.ws = workspace
        default = config.local(workspace, "", "mlflow.db")
        self.uri = config.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default}"
        self.store = _local_path(self.uri)
        if self.store is not None:
            check_place(workspace, self.store, "the MLflow store")
        self.experiment_name = config.mlflow_experiment or f"autoresearch/{workspace.resolve().name}"
        self.client = None
        self.experiment_id: str | None = None
        self.parent: str | None = None

    def where(self) -> str:
        return f"{self.uri} (experiment {self.experiment_name})"

    def private_paths(self) -> list[Path]:
        paths = [Path(p).expanduser() for p in CREDENTIAL_FILES]
        if self.store is not None:
            paths.append(self.store)
            if self.uri.startswith("sqlite:"):  # an empty file is an empty SQLite database
                self.store.parent.mkdir(parents=True, exist_ok=True)
                self.store.touch()
                self._artifact_root().mkdir(exist_ok=True)
                paths += [self.store.with_name(self.store.name + s) for s in ("-wal", "-shm", "-journal")]
                paths.append(self._artifact_root())
            else:
                self.store.mkdir(parents=True, exist_ok=True)
        return paths

    def _artifact_root(self) -> Path:
        assert self.store is not None
        return self.store.with_name("mlartifacts")

    # -- the research run ------------------------------------------------------------------------------------------

    def open(self, research: Research) -> None:
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from mlflow import MlflowClient

        for name in ("mlflow", "alembic"):  # after the import, which sets mlflow's: INFO lines break the live view
            logging.getLogger(name).setLevel(logging.WARNING)

        if self.store is not None:
            self.store.parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = self._artifact_root().as_uri() if self.uri.startswith("sqlite:") else None
            self.experiment_id = self.client.create_experiment(  # a training experiment: the UI opens on its runs
                self.experiment_name, artifact_location=location, tags={"mlflow.experimentKind": EXPERIMENT_KIND})
        runs = self._search(f"tags.`{KIND}` = 'research'")
        mine = [r for r in runs if r.data.tags.get(KEY) == research.key]
        if mine:
            self.parent = mine[0].info.run_id
            if mine[0].info.status != "RUNNING" and research.state == "running":
                self.client.update_run(self.parent, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, start_time=_ms(research.started_at),
                                         run_name=research.tag,
                                         tags={KIND: "research", TAG: research.tag, KEY: research.key})
            self.parent = run.info.run_id
            self._log(self.parent, params=research.params)
        self._log(self.parent, tags={f"autoresearch.{k}": v for k, v in research.tags.items()})

    def known(self, research: Research) -> set[str]:
        return {r.data.tags[KEY] for r in self._children() if r.data.tags.get(COMPLETE) == "1"}

    def _children(self) -> list:
        return self._search(f"tags.`{KIND}` = 'experiment' AND tags.`{PARENT}` = '{self.parent}'")

    def close(self, research: Research) -> None:
        tags = {"autoresearch.state": research.state, "autoresearch.stop_reason": research.stop_reason}
        self._log(self.parent, tags=tags)
        if research.state == "stopped" and research.ended_at is not None:
            stop = research.stop_reason
            status = ("KILLED" if stop.startswith("interrupted")
                      else "FAILED" if stop.startswith(("agent error", "the orchestrator crashed")) else "FINISHED")
            self.client.set_terminated(self.parent, status=status, end_time=_ms(research.ended_at))

    # -- one experiment --------------------------------------------------------------------------------------------

    def send(self, research: Research, entry: Entry) -> None:
        from mlflow.entities import Metric

        for run in self._children():  # a half-sent earlier try: replaced whole
            if run.data.tags.get(KEY) == entry.key:
                self.client.delete_run(run.info.run_id)
        run = self.client.create_run(self.experiment_id, start_time=_ms(entry.started_at), run_name=entry.title,
                                     tags={PARENT: self.parent, KIND: "experiment", TAG: research.tag,
                                           KEY: entry.key, "mlflow.note.content": entry.tags.get("description", "")})
        run_id = run.info.run_id
        at = _ms(entry.finished_at)
        metrics = [Metric(k, v, at, 0) for k, v in entry.metrics.items()]
        metrics += [Metric(f"train/{name}", v, at, step) for name, points in entry.curve.items() for step, v in points]
        self._log(run_id, params=entry.params, tags={f"autoresearch.{k}": v for k, v in entry.tags.items()},
                  metrics=metrics)
        for name, text in entry.artifacts.items():
            self.client.log_text(run_id, text, name)
        self.client.set_terminated(run_id, status="FAILED" if entry.failed else "FINISHED", end_time=at)
        if entry.best.value is not None:
            self._log(self.parent, metrics=[Metric(research.best_name, entry.best.value, _ms(entry.best.at),
                                                   entry.best.step)])
        self.client.set_tag(run_id, COMPLETE, "1")  # last: known() trusts only runs sent whole

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _search(self, where: str) -> list:
        out, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=where, max_results=1000,
                                           page_token=token)
            out += list(page)
            token = page.token
            if not token:
                return out

    def _log(self, run_id: str, params: dict | None = None, tags: dict | None = None, metrics: list = ()) -> None:
        from mlflow.entities import Param, RunTag

        ps = [Param(k, str(v)) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)[:8000]) for k, v in (tags or {}).items()]
        for i in range(0, max(len(ps), len(ts)), 100):  # at most 100 params and 100 tags a batch
            self.client.log_batch(run_id, params=ps[i:i + 100], tags=ts[i:i + 100])
        metrics = list(metrics)
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + BATCH])


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _local_path(uri: str) -> Path | None:
    """The file or directory behind a local store URI (sqlite:///relative.db, sqlite:////absolute.db, file:///dir,
    a plain path); None for a server."""
    if uri.startswith("sqlite:"):
        rest = uri[len("sqlite:"):].split("?", 1)[0]
        if not rest.startswith("///") or rest[3:] in ("", ":memory:"):
            raise TrackError(f"MLflow store {uri!r}: name a database file, e.g. sqlite:////path/to/mlflow.db")
        return Path(unquote(rest[3:])).expanduser().resolve()
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).resolve()
    if parsed.scheme == "":
        return Path(uri).expanduser().resolve()
    return None
