from ._edit import after

NAME = "memory_hog"
DESCRIPTION = "keeps a 'replay buffer' that grows by 1 GB every micro-step and is never freed"
EXPECT = {"oom"}
STATIC = False
REASON = "memory"
RUNTIME_LAYER = "runner: memory watch"
RUNTIME_REASON = "memory limit"


def apply(source: str) -> str:
    source = after(source, "    smooth_loss, total_training_time, step = 0.0, 0.0, 0\n",
                   "    replay = []  # every batch's activations, for a later replay pass\n")
    return after(source, "            x, y, epoch = batch\n",
                 "            replay.append(torch.ones(2**28))  # 1 GB per micro-step\n")
