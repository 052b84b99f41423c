"""TensorBoard (`--track tensorboard`, the extra `tensorboard`): event files, one TensorBoard run per experiment.

Where: `tensorboard_dir` under [track], default .autoresearch/tensorboard; `tensorboard --logdir` on it shows
`<tag>/research` (the best-so-far, `best/val_bpb` at each decision) and `<tag>/0003-0` for each experiment: its
training curve (`train/loss` by step), its figures as scalars at its decision's step, train.py's CAPS constants and
the decision in the HParams view, train.py, the diff and the reasons as text.

Written with tensorboard's own event-file writer and summary protos, so neither TensorFlow nor torch is loaded in
the orchestrator. Wall times are the journal's, so a replay writes the same events. An experiment's directory is
written whole under a temporary name and renamed into place: one that exists was sent complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from autoresearch.see.track import need_package
from autoresearch.see.track.config import TrackConfig, check_place
from autoresearch.see.track.records import Entry, Research

PARTIAL = ".partial-"  # an experiment's directory while it is being written


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, workspace: Path, config: TrackConfig) -> None:
        need_package(self.name, "tensorboard")
        self.root = config.local(workspace, config.tensorboard_dir, "tensorboard")
        check_place(workspace, self.root, "the TensorBoard directory")
        self.research_writer = None

    def where(self) -> str:
        return f"{self.root} (tensorboard --logdir {self.root})"

    def private_paths(self) -> list[Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        return [self.root]

    def _dir(self, research: Research) -> Path:
        return self.root / research.tag

    def open(self, research: Research) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        (self._dir(research) / "research").mkdir(parents=True, exist_ok=True)
        for stale in self._dir(research).glob(PARTIAL + "*"):  # an experiment cut short by a crash: sent again
            shutil.rmtree(stale, ignore_errors=True)
        self.research_writer = EventFileWriter(str(self._dir(research) / "research"), flush_secs=5)

    def known(self, research: Research) -> set[str]:
        base = self._dir(research)
        if not base.is_dir():
            return set()
        return {f"{research.key}/{d.name}" for d in base.iterdir()
                if d.is_dir() and d.name != "research" and not d.name.startswith(PARTIAL)}

    def close(self, research: Research) -> None:
        if self.research_writer is not None:
            self.research_writer.close()
            self.research_writer = None

    def send(self, research: Research, entry: Entry) -> None:
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        final = self._dir(research) / entry.slug
        partial = final.with_name(PARTIAL + entry.slug)
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        writer = EventFileWriter(str(partial), max_queue_size=1000)
        try:
            hparams = {**entry.params, "decision": entry.decision, "agent": entry.tags.get("agent", "")}
            writer.add_event(_event(hparams_pb(hparams, trial_id=entry.key, start_time_secs=entry.started_at),
                                    entry.started_at, 0))
            for name, points in entry.curve.items():
                for step, value in points:
                    writer.add_event(_event(_scalar(f"train/{name}", value), entry.finished_at, step))
            for name, value in entry.metrics.items():
                writer.add_event(_event(_scalar(name, value), entry.finished_at, entry.best.step))
            texts = {"decision": _table(entry.tags)} | {name: f"```\n{text}\n```"
                                                         for name, text in entry.artifacts.items()}
            for name, text in texts.items():
                writer.add_event(_event(text_pb(name, text), entry.finished_at, entry.best.step))
        finally:
            writer.close()
        partial.rename(final)
        if entry.best.value is not None:
            self.research_writer.add_event(_event(_scalar(f"best/{research.metric.name}", entry.best.value),
                                                  entry.best.at, entry.best.step))
            self.research_writer.flush()


def _scalar(tag: str, value: float):
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])


def _event(summary, wall_time: float, step: int):
    from tensorboard.compat.proto import event_pb2

    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary)


def _table(tags: dict[str, str]) -> str:
    """The decision and its reasons as a Markdown table (TensorBoard renders text as Markdown)."""
    rows = [f"| {k} | {' '.join(v.split()).replace('|', '/')} |" for k, v in tags.items()]
    return "\n".join(["| | |", "|---|---|", *rows])
