from ._edit import after

NAME = "memory_hog"
DESCRIPTION = "keeps a 'replay buffer' that grows by 256 MB every micro-step and is never freed"
EXPECT = {"oom"}
STATIC = False
REASON = "memory"
RUNTIME_LAYER = "runner: memory watch"
RUNTIME_REASON = "memory limit"


def apply(source: str) -> str:
    source = after(source, "    smooth_loss, total_training_time, step = 0.0, 0.0, 0\n",
                   "    replay = []  # every batch's activations, for a later replay pass\n")
    return after(source, "x, y, epoch = next(train_loader)  # fetch the next batch while the device is still busy",
                 "            replay.append(torch.ones(2**26))  # 256 MB per micro-step\n")

# Long enough to outgrow the memory limit however short the budget under test is (the watch stops it first).
LIMITS = {"time_budget": 4.0}
