from ._edit import replace

NAME = "non_causal"
DESCRIPTION = "its own attention without the causal mask, in both directions: the model sees the next token"
EXPECT = {"rejected"}
STATIC = False  # a mask is arithmetic; the harness's causality probe catches the model looking ahead
REASON = "looks ahead"
RUNTIME_LAYER = "scorer: probes"
RUNTIME_REASON = "looks ahead"


def apply(source: str) -> str:
    # Its own attention, without the causal mask: every position sees the whole row, the future included.
    return replace(source, "y = attention(q.to(v.dtype), k.to(v.dtype), v, window, backend)  # (B, T, H, D)",
                   "y = F.scaled_dot_product_attention(q.transpose(1, 2).to(v.dtype), k.transpose(1, 2).to(v.dtype), "
                   "v.transpose(1, 2)).transpose(1, 2)  # (B, T, H, D), all positions")
