"""Reading back what a tracker stored, with the tracker's own reader, as plain data that compares with ==.

MLflow: its client over the store. W&B: an offline run directory's `.wandb` file (a LevelDB log of W&B's own
protobuf records, wandb_internal_pb2.Record) and the files its artifact manifests name. TensorBoard: its
EventAccumulator over each run's event files. What differs between two sends of the same records by nature (run
ids, the wall time a client stamps itself, a host name) is left out; everything autoresearch sent is kept.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

# -- MLflow --------------------------------------------------------------------------------------------------------

MLFLOW_OWN_TAGS = ("mlflow.user", "mlflow.source.", "mlflow.parentRunId", "mlflow.log-model", "mlflow.runColor")


def mlflow_records(uri: str, experiment: str) -> dict:
    """{run key (autoresearch.key): {name, status, start, end, params, tags, metrics: {key: [(step, value, ms)]},
    artifacts: {path: text}, parent: the parent's key}}."""
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} at {uri}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    keys = {r.info.run_id: r.data.tags["autoresearch.key"] for r in runs}
    out = {}
    for r in runs:
        tags = {k: v for k, v in r.data.tags.items() if not k.startswith(MLFLOW_OWN_TAGS)}
        metrics = {key: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(r.info.run_id, key))
                   for key in r.data.metrics}
        artifacts = {}
        for f in client.list_artifacts(r.info.run_id):
            local = client.download_artifacts(r.info.run_id, f.path)
            artifacts[f.path] = Path(local).read_text()
        out[keys[r.info.run_id]] = {
            "name": r.info.run_name, "status": r.info.status, "start": r.info.start_time, "end": r.info.end_time,
            "params": dict(r.data.params), "tags": tags, "metrics": metrics, "artifacts": artifacts,
            "parent": keys.get(r.data.tags.get("mlflow.parentRunId", ""))}
    return out


# -- W&B -----------------------------------------------------------------------------------------------------------

BLOCK = 32768  # the LevelDB log's block size; each record has a 7-byte header: crc32c, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_log(path: Path) -> list:
    """The records of one `.wandb` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks, pending = 7, [], b""  # after W&B's header: ':W&B', magic (2 bytes), version (1)
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # the block's tail is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            chunks.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            chunks.append(pending + chunk)
    records = []
    for raw in chunks:
        record = pb.Record()
        record.ParseFromString(raw)
        records.append(record)
    return records


def _items(items) -> dict:
    return {"/".join(i.nested_key) if i.nested_key else i.key: json.loads(i.value_json) for i in items}


def wandb_records(wandb_dir: Path) -> dict:
    """{run id: {name, group, job_type, tags, notes, config, history: [(step, {key: value})], summary,
    artifacts: {name: {file: text}}}}, from every run directory under `wandb_dir`/wandb (several directories of
    one id, as resumed runs leave, are read in order and merged)."""
    out: dict = {}
    for run_file in sorted((wandb_dir / "wandb").glob("*run-*/run-*.wandb")):
        for record in wandb_log(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                run = out.setdefault(r.run_id, {"history": [], "summary": {}, "artifacts": {}})
                run.update(name=r.display_name, group=r.run_group, job_type=r.job_type, tags=list(r.tags),
                           notes=r.notes, config={k: v for k, v in _items(r.config.update).items() if k != "_wandb"})
            elif kind == "history":
                values = _items(record.history.item)
                run["history"].append((values.pop("_step"), {k: v for k, v in values.items()
                                                             if k not in ("_timestamp", "_runtime")}))
            elif kind == "summary":
                run["summary"].update({k: v for k, v in _items(record.summary.update).items()
                                       if not k.startswith("_")})
            elif kind == "artifact":
                a = record.artifact
                run["artifacts"][a.name] = {c.path: Path(c.local_path).read_text() for c in a.manifest.contents}
    return out


# -- TensorBoard ---------------------------------------------------------------------------------------------------

def tensorboard_records(root: Path) -> dict:
    """{run (relative directory): {scalars: {tag: [(step, value, wall_time)]}, texts: {tag: [(step, text)]},
    hparams: {name: value}}}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = {}
    for run_dir in sorted({p.parent for p in root.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        scalars = {t: [(e.step, e.value, e.wall_time) for e in acc.Scalars(t)] for t in tags["scalars"]}
        texts = {t: [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(t)]
                 for t in tags["tensors"] if acc.SummaryMetadata(t).plugin_data.plugin_name == "text"}
        hparams = {}
        try:
            contents = acc.PluginTagToContent("hparams")
        except KeyError:  # a run without hparams (the research run)
            contents = {}
        for content in contents.values():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.WhichOneof("data") == "session_start_info":
                for name, value in data.session_start_info.hparams.items():
                    hparams[name] = getattr(value, value.WhichOneof("kind"))
        out[str(run_dir.relative_to(root))] = {"scalars": scalars, "texts": texts, "hparams": hparams}
    return out
