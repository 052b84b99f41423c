from ._edit import replace

NAME = "steal_allowance"
DESCRIPTION = "counts 70% of each step against its own budget: ~1.4x the training time"
EXPECT = {"timeout"}
STATIC = False
REASON = "runner's clock|still running after"
RUNTIME_LAYER = "runner: training clock"
RUNTIME_REASON = "runner's clock"
# What it steals (~40% of the budget) must exceed the allowance to be seen: the runner clocks training from the
# second batch, so the allowance only covers the last step's overrun and left-over compilation (default 10 s + 5%).
LIMITS = {"time_budget": 4.0, "time_allowance": 0.5}


def apply(source: str) -> str:
    return replace(source, "            total_training_time += dt\n",
                   "            total_training_time += 0.7 * dt  # optimizer time is bookkeeping, not training\n")
