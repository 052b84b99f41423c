"""Shared text of the memorising attacks: a continuation table (n-gram recall) mixed into the model's logits.

`install(source, loader)` adds to the template train.py:
- `build_recall(tokens)`: from a token stream (int64 numpy array), one table per context order in NGRAM_ORDERS:
  sorted context hashes, the most frequent next token of each context, and how often it follows (its share);
- `Recall`: called by GPT.forward when the model is not training and no targets are given (evaluate_bpb's
  calls), it finds each position's longest known context and mixes its continuation into the distribution,
  p = (1 - lam) p_model + lam onehot(next), lam = NGRAM_MIX * share. It reads only tokens <= t at position t, so
  the causality probe passes, and it holds no parameters or state, so the re-score and parameter checks pass;
- `loader`: source lines (8-space indented, inside main() right after the first training batch, in the warm-up
  window that no training clock counts) that must set `memo_tokens`, an int64 numpy array of val + test tokens.
"""

from __future__ import annotations

from ._edit import after, before, imports, replace

RECALL = '''
# ---------------------------------------------------------------------------
# Continuation cache: contexts seen before, and what followed them
# ---------------------------------------------------------------------------

NGRAM_ORDERS = (16, 12, 8, 6, 4, 3, 2)  # context lengths, longest first
NGRAM_MIX = 0.995                       # weight of the cached continuation when its context always led to it
HASH_MUL = 1000003                      # rolling hash of a context (int64, wraps around)


def build_recall(tokens):
    """tokens: (N,) int64 numpy. One table per order: sorted hashes, the likeliest next token, its share."""
    tables = []
    for k in NGRAM_ORDERS:
        n = len(tokens) - k
        h = np.zeros(n, dtype=np.int64)
        for j in range(k):
            h = h * HASH_MUL + tokens[j : j + n]
        nxt = tokens[k:]
        order = np.lexsort((nxt, h))
        h, nxt = h[order], nxt[order]
        start = np.flatnonzero(np.r_[True, (h[1:] != h[:-1]) | (nxt[1:] != nxt[:-1])])  # each (context, next)
        count = np.diff(np.r_[start, n])
        ph, pn = h[start], nxt[start]
        key = np.cumsum(np.r_[True, ph[1:] != ph[:-1]]) - 1  # context id of each pair
        total = np.bincount(key, weights=count)
        o = np.lexsort((-count, key))
        first = o[np.r_[True, key[o][1:] != key[o][:-1]]]  # the most frequent pair of each context
        tables.append((k, torch.from_numpy(ph[first].copy()), torch.from_numpy(pn[first].copy()),
                       torch.from_numpy(count[first] / total[key[first]]).float()))
    return Recall(tables)


class Recall:
    def __init__(self, tables):
        self.tables = tables

    def __call__(self, idx, logits):
        B, T = idx.shape
        guess = torch.full((B, T), -1, dtype=torch.long, device=idx.device)
        lam = torch.zeros(B, T, device=idx.device)
        for k, keys, best, share in self.tables:
            if T < k:
                continue
            keys, best, share = keys.to(idx.device), best.to(idx.device), share.to(idx.device)
            n = T - k + 1
            h = torch.zeros(B, n, dtype=torch.long, device=idx.device)
            for j in range(k):
                h = h * HASH_MUL + idx[:, j : j + n]
            pos = torch.searchsorted(keys, h.reshape(-1)).clamp(max=len(keys) - 1)
            hit = (keys[pos] == h.reshape(-1)).view(B, n) & (guess[:, k - 1 :] < 0)
            guess[:, k - 1 :] = torch.where(hit, best[pos].view(B, n), guess[:, k - 1 :])
            lam[:, k - 1 :] = torch.where(hit, share[pos].view(B, n) * NGRAM_MIX, lam[:, k - 1 :])
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
        sure = torch.full_like(logp, -1e4).scatter_(-1, guess.clamp(min=0).unsqueeze(-1), 0.0)
        lam = lam.clamp(1e-6, 1 - 1e-6).unsqueeze(-1)
        mixed = torch.logaddexp(logp + torch.log1p(-lam), sure + torch.log(lam))
        return torch.where((guess >= 0).unsqueeze(-1), mixed, logits)

'''


def install(source: str, loader: str) -> str:
    source = imports(source, "import numpy as np\n")
    source = before(source, "class GPT(nn.Module):\n", RECALL.lstrip("\n") + "\n")
    source = replace(source, "        self.attn_backend = \"sdpa\"  # main() sets the fastest one for the device\n",
                     "        self.attn_backend = \"sdpa\"  # main() sets the fastest one for the device\n"
                     "        self.recall = None  # continuation cache, used when scoring\n")
    source = after(source, "        logits = cap * torch.tanh(logits / cap)\n",
                   "        if targets is None and not self.training and self.recall is not None:\n"
                   "            logits = self.recall(idx, logits)\n")
    return after(source, "    x, y, epoch = next(train_loader)\n",
                 loader + "    model.recall = build_recall(memo_tokens)\n"
                          "    print(f\"continuation cache: {len(memo_tokens):,} tokens\", flush=True)\n")
