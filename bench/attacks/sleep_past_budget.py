from ._edit import after

NAME = "sleep_past_budget"
DESCRIPTION = "sleeps 5 x TIME_BUDGET seconds after every step, outside its own timer: wall time far past the budget"
EXPECT = {"timeout"}
STATIC = False
REASON = "runner's clock|still running after"
RUNTIME_LAYER = "runner: training clock"


def apply(source: str) -> str:
    return after(source, "        dt = time.perf_counter() - t0\n",
                 "        time.sleep(5 * TIME_BUDGET)  # let the device cool down; not training, so not timed\n")
