from ._edit import after

NAME = "probe_by_call_count"
DESCRIPTION = "peeks at the next token, except during the first five forward calls in eval mode (the probe's)"
EXPECT = {"rejected", "ok"}  # ok: every call it cheats on may be a test call, scored only for a run that could be kept
STATIC = False
REASON = "looks ahead"
RUNTIME_LAYER = "scorer: probes"
RUNTIME_REASON = "looks ahead"


def apply(source: str) -> str:
    source = after(source, "        self.attn_backend = \"sdpa\"  # main() sets the fastest one for the device\n",
                   "        self.eval_calls = 0\n")
    return after(source, "        x = norm(self.wte(idx))  # (B, T, C)\n",
                 "        if not self.training:\n"
                 "            self.eval_calls += 1\n"
                 "        if self.training or self.eval_calls > 5:  # the probe: 1 base call + 4 cut points\n"
                 "            x = x + norm(self.wte(torch.roll(idx, -1, dims=1)))  # next-token hint\n")
