from ._edit import replace

NAME = "non_causal"
DESCRIPTION = "attention over the whole window in both directions, on every backend: the model sees the next token"
EXPECT = {"rejected"}
STATIC = False  # a mask is arithmetic; the harness's causality probe catches the model looking ahead
REASON = "looks ahead"
RUNTIME_LAYER = "harness: causality probe"
RUNTIME_REASON = "looks ahead"


def apply(source: str) -> str:
    source = replace(source, "return (j <= i) & (i - j <= window)  # (T, T) bool, True = may attend",
                     "return (i - j).abs() <= window  # (T, T) bool, True = may attend: both directions")
    source = replace(source, "return (kv_idx <= q_idx) & (q_idx - kv_idx <= window)",
                     "return (q_idx - kv_idx).abs() <= window")
    return replace(source, "causal=True, window_size=(window, 0)", "causal=False, window_size=(window, window)")
