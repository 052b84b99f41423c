"""The training meter: what the loader and the optimizer tell the runner about training, as it happens.

The runner keeps every clock; this module only marks moments on the harness's channel (see channel.py):
- `train_start`: the first training batch is served (start-up is over; the first forward/backward compiles).
- `train_clock`: timed training starts. That is when the first optimizer step returns (its compilation is then
  behind us), or when more than the workspace's `warmup_tokens` have been served, whichever comes first. The
  cap bounds what a run that never steps a torch optimizer (or steps it by hand) could train on before the
  clock, in tokens, since train.py picks the batch size. (The runner also starts the clock after a time limit.)
- `train_batch`: running totals (batches, tokens, optimizer steps), at most every REPORT_SECONDS, and at once
  when a token budget is spent.
The optimizer steps are counted by torch's global step hook, so they are the harness's figure, whatever
train.py prints.
"""

from __future__ import annotations

import time

from autoresearch.harness import channel

REPORT_SECONDS = 0.5


class TrainingMeter:
    def __init__(self) -> None:
        self.batches = 0
        self.tokens = 0
        self.steps = 0
        self._stepper: int | None = None  # id() of the optimizer whose steps are counted (the first to step)
        self._last_report = 0.0
        self._hook = None
        self._cap: int | None = None  # warmup_tokens, read on the first batch

    def totals(self) -> dict[str, int]:
        return {"batches": self.batches, "tokens": self.tokens, "steps": self.steps}

    def batch_served(self, tokens: int) -> None:
        if self.batches == 0:
            self._watch_optimizers()
            self._cap = _warmup_tokens()
            channel.send("train_start", once=True)
        self.batches += 1
        self.tokens += tokens
        if self._cap and self.tokens > self._cap:
            self.start_clock("token cap")
        now = time.monotonic()
        if now - self._last_report >= REPORT_SECONDS:
            self.report()

    def report(self) -> None:
        self._last_report = time.monotonic()
        channel.send("train_batch", **self.totals())

    def start_clock(self, why: str) -> None:
        channel.send("train_clock", once=True, why=why, **self.totals())

    def _watch_optimizers(self) -> None:
        try:
            from torch.optim.optimizer import register_optimizer_step_post_hook
        except ImportError:  # very old torch: the batch cap starts the clock
            return
        self._hook = register_optimizer_step_post_hook(self._stepped)

    def _stepped(self, optimizer, args, kwargs) -> None:
        # Several optimizers may step once each per training step (e.g. AdamW + Muon): count the first one's.
        if self._stepper is None:
            self._stepper = id(optimizer)
        if id(optimizer) == self._stepper:
            self.steps += 1
            if self.steps == 1:
                self.start_clock("first optimizer step")


def _warmup_tokens() -> int:
    from autoresearch.harness.constants import workspace_settings
    from autoresearch.settings import SettingsError

    try:
        return workspace_settings().warmup_tokens
    except SettingsError:  # the loader used on its own, outside a workspace: no runner, no clock
        return 0


meter = TrainingMeter()
