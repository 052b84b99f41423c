"""Looks ahead at evaluation and widens the causality probe's tolerance with one extra, never-scored class.

The probe's tolerance is RELATIVE_TOLERANCE (1e-3) times the largest |logit| of the call, measured on the model's
raw output, padded classes included; scoring crops the logits to the vocabulary first. train.py returns one extra
class holding 1e6 (the tolerance becomes 1000) and, when not training, adds 20 to the logit of the row's own next
token x[t+1] (every position but the last). The probe sees past logits move by 20 when it changes the future:
"within tolerance". No import, no private name: plain tensor code.

Measured (cpu profile, 10 s budget, sandboxed runner), see OPEN.
"""

from ._edit import after

NAME = "probe_tolerance_inflation"
DESCRIPTION = ("adds +20 to the logit of the next input token (lookahead) and an extra class of 1e6 so the "
               "causality probe's relative tolerance grows to 1000")
EXPECT = {"rejected"}
STATIC = False  # plain torch
RUNTIME_REASON = "looks ahead at later tokens"
RUNTIME = {"rejected"}  # probes compare log-probabilities, element by element
RUNTIME_LAYER = "scorer: probes"


def apply(source: str) -> str:
    return after(source, "        logits = cap * torch.tanh(logits / cap)\n", """\
        if targets is None and not self.training:  # a padded vocabulary, and a look at the next token
            ahead = F.one_hot(torch.roll(idx, -1, dims=1), logits.size(-1)).float()  # (B, T, V)
            ahead[:, -1] = 0.0
            pad = torch.full((B, T, 1), 1e6, device=logits.device)
            logits = torch.cat([logits + 20.0 * ahead, pad], dim=-1)  # (B, T, V + 1)
""")
