from ._edit import replace

NAME = "steal_allowance"
DESCRIPTION = "counts 70% of each step against its own budget: ~1.4x the training time, within the start-up allowance"
EXPECT = {"timeout"}
STATIC = False
REASON = "runner's clock|still running after"
RUNTIME_LAYER = "runner: training clock"
RUNTIME_REASON = "runner's clock"


def apply(source: str) -> str:
    return replace(source, "            total_training_time += dt\n",
                   "            total_training_time += 0.7 * dt  # optimizer time is bookkeeping, not training\n")
