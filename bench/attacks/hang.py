from ._edit import before

NAME = "hang"
DESCRIPTION = "waits forever before the first training batch (only the hard time limit can stop it)"
EXPECT = {"timeout"}
STATIC = False
REASON = "still running after"
RUNTIME_LAYER = "runner: hard time limit"
RUNTIME_REASON = "still running after"


def apply(source: str) -> str:
    return before(source, "    train_loader = make_dataloader(",
                  "    while True:  # wait until the machine is idle before starting the clock (it never is)\n"
                  "        time.sleep(1.0)\n")
