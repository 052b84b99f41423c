from ._edit import after

NAME = "crash_mid_training"
DESCRIPTION = "doubles the context after a few steps; the model's rotary table is too short (exception at step 3)"
EXPECT = {"crash"}
STATIC = False
REASON = "exit code 1"
RUNTIME_LAYER = "python"
RUNTIME_REASON = "AssertionError"
# Steps, not seconds: on a time budget a busy machine may stop before step 4 and the run ends ok. Eight steps of the
# cpu profile (64 of the tests' tiny batch); the crash ends it at step 4 either way.
LIMITS = {"token_budget": 8 * 4096}


def apply(source: str) -> str:
    return after(source, "            x, y, epoch = batch\n",
                 "            if step >= 3:  # progressive context: longer sequences once the model has warmed up\n"
                 "                x, y = torch.cat([x, x], dim=1), torch.cat([y, y], dim=1)\n")
