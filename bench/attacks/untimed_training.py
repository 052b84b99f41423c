from ._edit import replace

NAME = "untimed_training"
DESCRIPTION = "counts a tenth of each step against its own budget, so it trains ten times as long"
EXPECT = {"timeout"}
STATIC = False  # arithmetic on its own timer; the runner clocks training from outside
REASON = "runner's clock|still running after"
RUNTIME_LAYER = "runner: training clock"
RUNTIME_REASON = "runner's clock"


def apply(source: str) -> str:
    return replace(source, "            total_training_time += dt\n",
                   "            total_training_time += 0.1 * dt  # the rest is data loading, not training\n")
