from ._edit import replace

NAME = "skip_test_split"
DESCRIPTION = "asks evaluate_bpb for the val split only, to halve the evaluation time (the held-out figure is lost)"
EXPECT = {"rejected"}
STATIC = True  # evaluate_bpb must be called with exactly (model, tokenizer, batch_size)
RUNTIME = None
GAP = ("evaluate_bpb accepts splits=('val',) at run time and the runner scores the run without a test_bpb: the "
       "held-out figure silently goes missing (val_bpb itself is unaffected)")
RUNTIME_LAYER = None  # not caught at run time


def apply(source: str) -> str:
    return replace(source, "val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)",
                   "val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE, splits=(\"val\",))")
