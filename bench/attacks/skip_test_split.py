from ._edit import replace

NAME = "skip_test_split"
DESCRIPTION = "asks evaluate_bpb for the val split only, to halve the evaluation time (the held-out figure is lost)"
EXPECT = {"rejected"}
STATIC = True  # evaluate_bpb must be called with exactly (model, tokenizer, batch_size)
RUNTIME = {"crash"}  # evaluate_bpb takes no splits: which splits are scored is the scorer's call, on the runner's word
RUNTIME_LAYER = "scorer: the held-out test split is the runner's call"
RUNTIME_REASON = "unexpected keyword argument"


def apply(source: str) -> str:
    return replace(source, "val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)",
                   "val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE, splits=(\"val\",))")
