from ._edit import replace

NAME = "no_evaluation"
DESCRIPTION = "skips the slow evaluation and reports the training loss converted to bits per byte"
EXPECT = {"rejected"}
STATIC = False
REASON = "without the harness's evaluation"
RUNTIME_LAYER = "runner: official figure"
RUNTIME_REASON = "without the harness's evaluation"


def apply(source: str) -> str:
    return replace(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)\n",
                   "    val_bpb = debiased / math.log(2) / 4.0  # ~4 bytes per token; the evaluation is slow\n")
