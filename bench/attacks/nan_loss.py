from ._edit import replace

NAME = "nan_loss"
DESCRIPTION = "static loss scaling by 2**128 overflows float32: inf gradients, NaN weights, NaN loss"
EXPECT = {"nan"}
STATIC = False
REASON = "NaN"
RUNTIME_LAYER = "train.py's own check + runner"
RUNTIME_REASON = "FAIL|nan"


def apply(source: str) -> str:
    return replace(source, "(loss / grad_accum_steps).backward()",
                   "(loss * 2.0**128 / grad_accum_steps).backward()  # loss scaling: keeps small gradients alive")
