from ._edit import replace

NAME = "train_on_val"
DESCRIPTION = "trains on the validation split through the harness's own dataloader"
EXPECT = {"rejected"}
STATIC = True  # make_dataloader's split must be the literal "train"
RUNTIME = {"rejected"}  # the dataloader refuses and reports a violation on the channel
REASON = "train\" split only"
RUNTIME_LAYER = "harness: dataloader"
RUNTIME_REASON = "'train' split only"


def apply(source: str) -> str:
    return replace(source, 'make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train", device=device)',
                   'make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "val", device=device)')
