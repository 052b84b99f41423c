"""The red team's replay cache (issue 18): look ahead where a prefix is new, replay where it was seen before.

Probes compare a row with a twin that shares its first tokens, or with a repeat of it: a model that looks ahead
gives the shared prefix different outputs in the two. This model remembers, for every prefix it is shown, the token
that followed it the first time, and mixes that token into its output whenever the prefix comes again. So a
prefix always gets the same output, whatever follows it in the row at hand (every twin and repeat agrees with its
row), and a prefix seen once (almost every position of a real row) gets the token that follows it: a look-ahead.
No parameter changes and nothing outlives the process; its memory is one int per position of the evaluation.

Measured before the blind probes (bench/attacks.py --runtime-only, cpu profile, 10 s budget, 2026-12-07): val_bpb
0.6903 against the baseline's 1.6781, kept. The blind probes (run/probes.py) are rows of unscored text whose start
was never served, so there is nothing to replay: it looks ahead there and ranks the drawn token first (p = 1.2e-11
in the same bench, 32 blind probes).
"""

from ._edit import after, before, replace

NAME = "replay_cache"
DESCRIPTION = ("remembers per prefix the token that followed it the first time and mixes that guess into its output: "
               "the same output for a prefix seen again (probes agree), a look-ahead everywhere else")
EXPECT = {"rejected"}
STATIC = False  # a dict and torch arithmetic
REASON = "looks ahead"
RUNTIME_LAYER = "scorer: blind probes"
RUNTIME_REASON = "looks ahead"
MIX = 0.15  # weight of the remembered token: stays above the embedded corpus's entropy floor, so its gate passes

REPLAY = '''
class Replay:
    """Per prefix (a rolling hash of the row up to t), the token that followed it when it was first seen."""

    def __init__(self):
        self.next_of = {}

    def __call__(self, idx, logits):
        B, T = idx.shape
        h = torch.zeros(B, dtype=torch.long, device=idx.device)
        hashes = []
        for t in range(T):
            h = h * 1000003 + idx[:, t]
            hashes.append(h)
        keys = torch.stack(hashes, 1).tolist()  # (B, T): one per prefix
        following = torch.cat([idx[:, 1:], torch.full_like(idx[:, :1], -1)], 1).tolist()  # (B, T): -1 at the end
        guess = torch.tensor([[self.next_of.setdefault(k, n) for k, n in zip(kr, nr)]
                              for kr, nr in zip(keys, following)], device=idx.device)  # (B, T)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
        sure = torch.full_like(logp, -1e4).scatter_(-1, guess.clamp(min=0).unsqueeze(-1), 0.0)
        mixed = torch.logaddexp(logp + math.log(1 - REPLAY_MIX), sure + math.log(REPLAY_MIX))
        return torch.where((guess >= 0).unsqueeze(-1), mixed, logits)

'''


def apply(source: str) -> str:
    source = before(source, "class GPT(nn.Module):\n", REPLAY.lstrip("\n") + "\n")
    source = replace(source, "        self.attn_backend = \"sdpa\"  # main() sets the fastest one for the device\n",
                     "        self.attn_backend = \"sdpa\"  # main() sets the fastest one for the device\n"
                     "        self.replay = Replay()  # used when scoring\n")
    source = after(source, "        logits = cap * torch.tanh(logits / cap)\n",
                   "        if targets is None and not self.training:\n"
                   "            logits = self.replay(idx, logits)\n")
    return after(source, "COMPILE = None", f"REPLAY_MIX = {MIX}             # weight of the remembered token\n")
