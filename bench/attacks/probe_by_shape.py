from ._edit import after

NAME = "probe_by_shape"
DESCRIPTION = "peeks at the next token except on the tiny batches it guesses the causality probe uses"
EXPECT = {"rejected"}
STATIC = False
REASON = "looks ahead"
RUNTIME_LAYER = "scorer: probes"
RUNTIME_REASON = "looks ahead"


def apply(source: str) -> str:
    return after(source, "        x = norm(self.wte(idx))  # (B, T, C)\n",
                 "        if idx.size(0) > 2:  # the harness probes causality on a batch of one or two rows\n"
                 "            x = x + norm(self.wte(torch.roll(idx, -1, dims=1)))  # next-token hint\n")
