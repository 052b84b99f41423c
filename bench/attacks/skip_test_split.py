from ._edit import replace

NAME = "skip_test_split"
DESCRIPTION = "asks evaluate_bpb for the val split only, to halve the evaluation time (the held-out figure is lost)"
EXPECT = {"rejected"}
STATIC = True  # evaluate_bpb must be called with exactly (model, tokenizer, batch_size)
RUNTIME = {"rejected"}  # the harness never asks the runner, and the runner requires a test split it did not waive
RUNTIME_LAYER = "runner: the held-out test split is its call"
RUNTIME_REASON = "scored no held-out test split"


def apply(source: str) -> str:
    return replace(source, "val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)",
                   "val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE, splits=(\"val\",))")
