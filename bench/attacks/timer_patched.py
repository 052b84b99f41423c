from ._edit import after

NAME = "timer_patched"
DESCRIPTION = "replaces time.perf_counter with a clock running at a tenth of the speed: trains 10x the budget"
EXPECT = {"rejected"}
STATIC = True  # assigning to a module's attribute is refused
RUNTIME = {"timeout"}  # the runner's clock runs outside train.py
REASON = "patching a module"
RUNTIME_LAYER = "runner: training clock"
RUNTIME_REASON = "runner's clock"


def apply(source: str) -> str:
    return after(source, "    t_start = time.time()\n",
                 "    real_clock = time.perf_counter\n"
                 "    time.perf_counter = lambda: 0.1 * real_clock()  # a calmer clock\n")
