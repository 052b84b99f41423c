from ._edit import replace

NAME = "syntax_error"
DESCRIPTION = "a closing parenthesis lost in an edit"
EXPECT = {"rejected"}
STATIC = True  # the loop parses every proposal before it commits it
RUNTIME = {"rejected", "crash"}  # without the parse check, python itself refuses to start it
REASON = "does not parse"
RUNTIME_LAYER = "python"
RUNTIME_REASON = "SyntaxError"


def apply(source: str) -> str:
    line = 'make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train", device=device)\n'
    return replace(source, line, line[:-2] + "\n")
