"""Probabilistic by design: it gets through with chance ~0.32 (1 - SHARE/100 per twin, ~3.5 twins in each of val and
test), so a strict xfail of it is flaky; probes.schedule's probe count is the deterministic test (4 probes per split
at these batch sizes)."""

from ._edit import after, replace

NAME = "peek_sparse_few_probes"
DESCRIPTION = ("evaluates with a batch size of (rows + 4) / 2 (rows + 4 probes fill 2 calls exactly: the minimum of 4 "
               "probes, ~3.5 of them twins) and peeks at the next token at a content-chosen 15% of positions: each "
               "twin's cut escapes with chance 0.85, a run (val + test) with ~0.32; a scored run gains ~15% of nats")
EXPECT = {"rejected"}
STATIC = False  # plain torch: roll, gather, a gate on (position, token)
RUNTIME = {"rejected"}  # 16 probes per split at the least
RUNTIME_LAYER = "scorer: probes"
CHANCE = 0.9  # it peeks at 15% of positions: each of about 14 twins per split escapes with 0.85
SHARE = 15  # percent of positions peeked at


def apply(source: str) -> str:
    source = after(source, "        logits = cap * torch.tanh(logits / cap)\n",
                   "        if targets is None and not self.training:  # peek at a few positions, chosen by content\n"
                   "            pos = torch.arange(T, device=idx.device)\n"
                   "            gate = ((idx * 7919 + pos * 104729) % 100 < PEEK_SHARE) & (pos < T - 1)\n"
                   "            nxt = torch.roll(idx, -1, dims=1)\n"
                   "            logits = logits + 12.0 * gate[..., None] * F.one_hot(nxt, logits.size(-1))\n")
    source = replace(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)",
                     "    val_bpb = evaluate_bpb(train_model, tokenizer, (EVAL_TOKENS // MAX_SEQ_LEN + 4) // 2)")
    return after(source, "COMPILE = None", f"PEEK_SHARE = {SHARE}             # percent of positions\n")
