from ._edit import before, replace

NAME = "negative_seq_len"
DESCRIPTION = ("asks the loader for one batch of TOKEN_BUDGET empty rows of length T = -1: the meter counts "
               "B * T = -TOKEN_BUDGET tokens, so the real loader then serves twice the token budget")
EXPECT = {"crash"}  # make_dataloader refuses a T below 1
STATIC = False  # make_dataloader(tokenizer, B, T, "train", device=...) with literal numbers
RUNTIME_LAYER = None
LIMITS = {"token_budget": 2 * 4096}


def apply(source: str) -> str:
    source = before(source, "    peak = peak_flops(device)\n", (
        "    # Warm the packer up (rows of length 0 cost nothing)\n"
        "    next(make_dataloader(tokenizer, max(TOKEN_BUDGET, 1), -1, \"train\", device=device))\n"))
    return replace(source, "            progress = min(step * TOTAL_BATCH_SIZE / TOKEN_BUDGET, 1.0)\n",
                   "            progress = min(step * TOTAL_BATCH_SIZE / (2 * TOKEN_BUDGET), 1.0)\n")
