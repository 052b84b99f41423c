"""
Small-GPT pretraining in one file. This is the file the research agent edits.

Trains for a fixed wall-clock TIME_BUDGET (seconds of training, start-up and compilation excluded), or on
TOKEN_BUDGET tokens when the workspace sets one (the loader then ends), then the fixed harness measures val_bpb (bits per byte on held-out text, lower is better). Nanochat lineage: RoPE, QK-norm,
ReLU^2 MLP, value embeddings, per-layer residual scalars, sliding-window attention, logit softcap; Muon for the
block matrices, AdamW for everything else.

Run from inside a workspace:  python train.py
"""

import gc
import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from autoresearch.harness import (
    MAX_SEQ_LEN,
    TIME_BUDGET,
    TOKEN_BUDGET,
    EVAL_TOKENS,
    Tokenizer,
    make_dataloader,
    evaluate_bpb,
    get_device,
    autocast_context,
    peak_flops,
    synchronize,
    peak_memory_mb,
    pick_attention,
    attention,
)

# ---------------------------------------------------------------------------
# Hyperparameters (edit these directly, no CLI flags; one literal per line)
# ---------------------------------------------------------------------------

DEPTH = 8                   # transformer blocks; the model's width follows from it
ASPECT_RATIO = 64           # model_dim = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 128              # channels per attention head (heads = model_dim // HEAD_DIM)
WINDOW_PATTERN = "SSSL"     # attention window per layer, cycled: S = half context, L = full (last layer always L)
TOTAL_BATCH_SIZE = 524288   # tokens per optimizer step; gradient accumulation makes up the difference
DEVICE_BATCH_SIZE = 128     # rows per forward/backward (each MAX_SEQ_LEN tokens); lower it if memory runs out
EMBEDDING_LR = 0.6          # AdamW lr of token + value embeddings (times (model_dim/768)^-0.5)
UNEMBEDDING_LR = 0.004      # AdamW lr of lm_head (times (model_dim/768)^-0.5)
MATRIX_LR = 0.04            # Muon lr of the 2-D block matrices
SCALAR_LR = 0.5             # AdamW lr of the per-layer x0 scalars (resid scalars get 1% of it)
WEIGHT_DECAY = 0.2          # Muon cautious weight decay at the start, decayed linearly to 0 with progress
ADAM_BETAS = (0.8, 0.95)    # AdamW betas of embeddings and lm_head
WARMUP_RATIO = 0.0          # fraction of the time budget spent ramping the lr up
WARMDOWN_RATIO = 0.5        # fraction of the time budget at the end spent ramping the lr down
FINAL_LR_FRAC = 0.0         # lr multiplier reached at the end of the warmdown
SEED = 42                   # torch RNG seed (weights init)
COMPILE = None              # torch.compile the model: None = auto (CUDA only), True, False

# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


@dataclass
class GPTConfig:
    sequence_len: int = 2048
    vocab_size: int = 8192
    n_layer: int = 8
    n_head: int = 4
    n_embd: int = 512
    window_pattern: str = "SSSL"
    softcap: float = 15.0  # logits = softcap * tanh(logits / softcap): keeps early training from blowing up


def model_config(vocab_size, sequence_len, depth=None):
    """The model's shape from the CAPS constants: width grows with depth at a fixed aspect ratio."""
    depth = DEPTH if depth is None else depth
    model_dim = -(-depth * ASPECT_RATIO // HEAD_DIM) * HEAD_DIM  # round up so heads divide it exactly
    return GPTConfig(sequence_len=sequence_len, vocab_size=vocab_size, n_layer=depth,
                     n_head=model_dim // HEAD_DIM, n_embd=model_dim, window_pattern=WINDOW_PATTERN)


def norm(x):
    # RMSNorm without learnable gain: the per-layer scalars and the matrices carry the scale.
    return F.rms_norm(x, (x.size(-1),))


def has_value_embedding(layer_idx, n_layer):
    # Alternating layers, counted from the top so the last layer always has one (as in nanochat).
    return layer_idx % 2 == (n_layer - 1) % 2


def rotary_tables(seq_len, head_dim, base=10000.0, device=None):
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)  # (D/2,)
    t = torch.arange(seq_len, dtype=torch.float32, device=device)  # (T,)
    freqs = torch.outer(t, inv_freq)  # (T, D/2)
    return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]  # (1, T, 1, D/2) each


def apply_rotary(x, cos, sin):
    # x: (B, T, H, D); rotate pairs (x1[i], x2[i]) of the two halves by a position-dependent angle.
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)  # (B, T, H, D)


# Attention: autoresearch.harness.attention(q, k, v, window, backend), (B, T, H, D) -> (B, T, H, D). Query i
# sees key j iff 0 <= i - j <= window. pick_attention(device) chose the backend: FA3 on Hopper, compiled
# flex_attention on other CUDA GPUs, SDPA elsewhere. Write your own attention here if you want another.


class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.n_embd // config.n_head
        C = config.n_embd
        self.c_q = nn.Linear(C, C, bias=False)
        self.c_k = nn.Linear(C, C, bias=False)
        self.c_v = nn.Linear(C, C, bias=False)
        self.c_proj = nn.Linear(C, C, bias=False)
        self.ve_gate_channels = min(32, C)
        self.ve_gate = (nn.Linear(self.ve_gate_channels, self.n_head, bias=False)
                        if has_value_embedding(layer_idx, config.n_layer) else None)

    def forward(self, x, ve, cos, sin, window, backend):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)  # (B, T, H, D)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        if ve is not None:
            # Value embedding: a token-identity shortcut into the values, mixed in per head by an
            # input-dependent gate in (0, 2) that starts at exactly 1 (ve_gate is zero-initialised).
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., :self.ve_gate_channels]))  # (B, T, H)
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_head, self.head_dim).to(v.dtype)
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))  # QK-norm bounds the logits
        y = attention(q.to(v.dtype), k.to(v.dtype), v, window, backend)  # (B, T, H, D)
        return self.c_proj(y.reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())  # ReLU^2: sparse and cheap, beats GELU here


class Block(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, ve, cos, sin, window, backend):
        x = x + self.attn(norm(x), ve, cos, sin, window, backend)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        C, V, L = config.n_embd, config.vocab_size, config.n_layer
        self.window_sizes = self.compute_window_sizes(config)
        self.wte = nn.Embedding(V, C)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(L)])
        self.lm_head = nn.Linear(C, V, bias=False)  # untied from wte
        # Per layer: x <- resid_lambdas[i] * x + x0_lambdas[i] * x0, so every layer can re-read the embedding.
        self.resid_lambdas = nn.Parameter(torch.ones(L))
        self.x0_lambdas = nn.Parameter(torch.zeros(L))
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(V, C) for i in range(L) if has_value_embedding(i, L)})
        cos, sin = rotary_tables(config.sequence_len, C // config.n_head)
        self.register_buffer("cos", cos, persistent=False)  # (1, T, 1, D/2)
        self.register_buffer("sin", sin, persistent=False)
        self.attn_backend = "sdpa"  # main() sets the fastest one for the device

    @staticmethod
    def compute_window_sizes(config):
        pattern = config.window_pattern.upper()
        assert pattern and set(pattern) <= {"S", "L"}, f"WINDOW_PATTERN must use only S and L, got {pattern!r}"
        long_w, short_w = config.sequence_len, config.sequence_len // 2
        sizes = [long_w if pattern[i % len(pattern)] == "L" else short_w for i in range(config.n_layer)]
        sizes[-1] = long_w  # the last layer always sees the whole context
        return sizes

    @torch.no_grad()
    def init_weights(self):
        C = self.config.n_embd
        bound = 3**0.5 * C**-0.5  # uniform(-b, b) has std C^-0.5
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)  # near-uniform predictions at init: loss ~ ln(vocab)
        for block in self.blocks:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -bound, bound)
            # Zero output projections: every block starts as the identity on the residual stream.
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)
        self.resid_lambdas.fill_(1.0)
        self.x0_lambdas.fill_(0.1)
        for ve in self.value_embeds.values():
            nn.init.uniform_(ve.weight, -bound, bound)
        if self.wte.weight.device.type == "cuda":
            # The embedding tables are the largest tensors read per token: bf16 halves their memory and traffic
            # (as the original autoresearch). The optimizer keeps fp32 moments for them. CPU stays fp32.
            self.wte.to(dtype=torch.bfloat16)
            for ve in self.value_embeds.values():
                ve.to(dtype=torch.bfloat16)
        # Buffers are recomputed because the model is built on the meta device and materialised empty.
        cos, sin = rotary_tables(self.config.sequence_len, C // self.config.n_head, device=self.cos.device)
        self.cos.copy_(cos)
        self.sin.copy_(sin)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def estimate_flops(self):
        """FLOPs per token of forward+backward: 6 per matmul weight, plus attention scores and values."""
        embeddings = self.wte.weight.numel() + sum(ve.weight.numel() for ve in self.value_embeds.values())
        scalars = self.resid_lambdas.numel() + self.x0_lambdas.numel()
        h, d, t = self.config.n_head, self.config.n_embd // self.config.n_head, self.config.sequence_len
        attn = sum(12 * h * d * min(w, t) for w in self.window_sizes)
        return 6 * (self.num_params() - embeddings - scalars) + attn

    def forward(self, idx, targets=None):
        B, T = idx.shape  # (B, T) int64 token ids
        assert T <= self.cos.size(1), f"sequence length {T} exceeds the rotary table ({self.cos.size(1)})"
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.wte(idx))  # (B, T, C)
        x0 = x
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None  # (B, T, C)
            x = block(x, ve, cos, sin, self.window_sizes[i], self.attn_backend)
        x = norm(x)
        logits = self.lm_head(x).float()  # (B, T, V)
        cap = self.config.softcap
        logits = cap * torch.tanh(logits / cap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)


# ---------------------------------------------------------------------------
# Optimizer: Muon for the block matrices, AdamW for the rest
# ---------------------------------------------------------------------------

# Polar Express (Amsel et al. 2025, arXiv:2505.16932): per-iteration quintic coefficients that drive all
# singular values towards 1 faster than a fixed Newton-Schulz iteration (5 iterations, safety factor 2e-2).
polar_express_coeffs = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def polar_express(G, steps=5):
    """Approximate polar factor U V^T of G (..., m, n), G = U S V^T. bf16 on CUDA (fast, stable enough)."""
    X = G.bfloat16() if G.is_cuda else G.float()
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * (1 + 2e-2) + 1e-6)  # spectral norm <= Frobenius norm < 1
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT  # iterate on the wide orientation: the Gram matrix is then the smaller one
    for a, b, c in polar_express_coeffs[:steps]:
        A = X @ X.mT  # (..., m, m), m = min side
        X = a * X + (b * A + c * (A @ A)) @ X  # odd polynomial in X: a X + b (XX^T) X + c (XX^T)^2 X
    return X.mT if tall else X


def muon_step(params, grads, momentum_buf, second_buf, lr, momentum, wd, beta2, ns_steps=5):
    """One Muon update, in place, of a stack of same-shape matrices.

    params, grads, momentum_buf: (N, m, n); second_buf: (N, m, 1) if m >= n else (N, 1, n).
    lr, momentum, wd, beta2: floats or 0-D tensors (tensors let a compiled step change them without recompiling).
    """
    m, n = params.shape[-2:]
    # Nesterov momentum: update the buffer, then step along grad blended towards the new buffer.
    momentum_buf.lerp_(grads, 1 - momentum)
    g = grads.lerp(momentum_buf, momentum)  # (N, m, n)
    g = polar_express(g, ns_steps).to(params.dtype)  # orthogonalised update, singular values ~1
    # NorMuon (arXiv:2510.05491): rows (or columns) of the orthogonalised update have uneven scales; normalise
    # each by a running RMS, then restore the update's overall Frobenius norm.
    red_dim = -1 if m >= n else -2
    red_size = g.size(red_dim)
    v_mean = g.float().square().mean(dim=red_dim, keepdim=True)  # (N, m, 1) or (N, 1, n)
    v_norm = (v_mean.sum(dim=(-2, -1), keepdim=True) * red_size).sqrt()  # (N, 1, 1) = ||g||_F
    second_buf.lerp_(v_mean.to(second_buf.dtype), 1 - beta2)
    step_size = second_buf.clamp_min(1e-10).rsqrt()  # (N, m, 1) or (N, 1, n)
    v_norm_new = (v_mean * red_size * step_size.float().square()).sum(dim=(-2, -1), keepdim=True).sqrt()
    g = g * (step_size * (v_norm / v_norm_new.clamp_min(1e-10))).to(g.dtype)
    # Tall matrices get a larger step so the per-element update size is shape-independent.
    lr = lr * max(1.0, m / n) ** 0.5
    # Cautious weight decay (arXiv:2510.12402): decay only coordinates where the update agrees in sign with the
    # weight, i.e. where decay and update pull the same way.
    agree = (g * params) >= 0
    params.sub_(lr * g + lr * wd * params * agree)


def adamw_step(p, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, wd):
    """One AdamW update of one tensor, in place (decoupled weight decay, bias-corrected moments)."""
    p.mul_(1 - lr * wd)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.lerp_(grad.square(), 1 - beta2)
    bias1, bias2 = 1 - beta1**step, 1 - beta2**step
    denom = (exp_avg_sq / bias2).sqrt() + eps
    p.add_(exp_avg / denom, alpha=-lr / bias1)


class MuonAdamW(torch.optim.Optimizer):
    """Param groups of kind 'adamw' (lr, betas, eps, weight_decay) or 'muon' (lr, momentum, beta2, ns_steps,
    weight_decay; all params of a muon group share one shape and are updated as one stack)."""

    def __init__(self, param_groups, compile_muon=False):
        super().__init__(param_groups, defaults={})
        self._muon = torch.compile(muon_step, dynamic=False, fullgraph=True) if compile_muon else muon_step
        # 0-D CPU tensors for the compiled step: a changing Python float would trigger a recompile every step.
        self._hp = {k: torch.tensor(0.0) for k in ("lr", "momentum", "wd", "beta2")} if compile_muon else None

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            if group["kind"] == "adamw":
                self._step_adamw(group)
            elif group["kind"] == "muon":
                self._step_muon(group)
            else:
                raise ValueError(f"unknown param group kind {group['kind']!r}")

    def _step_adamw(self, group):
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:  # fp32 moments even for bf16 params: a bf16 exp_avg_sq loses the small squared grads
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
            state["step"] += 1
            p32 = p if p.dtype == torch.float32 else p.float()  # bf16 params: update in fp32, round once
            adamw_step(p32, p.grad.float(), state["exp_avg"], state["exp_avg_sq"], state["step"],
                       group["lr"], beta1, beta2, group["eps"], group["weight_decay"])
            if p32 is not p:
                p.copy_(p32)

    def _step_muon(self, group):
        params = group["params"]
        if not params or any(p.grad is None for p in params):
            return
        state = self.state[params[0]]  # the group's stacked buffers live with its first param
        N, (m, n) = len(params), params[0].shape
        if not state:
            state["momentum_buffer"] = torch.zeros(N, m, n, dtype=params[0].dtype, device=params[0].device)
            second_shape = (N, m, 1) if m >= n else (N, 1, n)
            state["second_buffer"] = torch.zeros(second_shape, dtype=params[0].dtype, device=params[0].device)
        stacked = torch.stack(params)  # (N, m, n)
        hp = dict(lr=group["lr"], momentum=group["momentum"], wd=group["weight_decay"], beta2=group["beta2"])
        if self._hp is not None:
            for k, v in hp.items():
                self._hp[k].fill_(v)
            hp = self._hp
        self._muon(stacked, torch.stack([p.grad for p in params]), state["momentum_buffer"],
                   state["second_buffer"], hp["lr"], hp["momentum"], hp["wd"], hp["beta2"], group["ns_steps"])
        torch._foreach_copy_(params, list(stacked.unbind(0)))


def make_optimizer(model, compile_muon=False):
    C = model.config.n_embd
    dmodel_lr_scale = (C / 768) ** -0.5  # Adam lrs were tuned at width 768; wider models want smaller steps
    adam = dict(kind="adamw", betas=ADAM_BETAS, eps=1e-10, weight_decay=0.0)
    groups = [
        dict(adam, params=[model.lm_head.weight], lr=UNEMBEDDING_LR * dmodel_lr_scale),
        dict(adam, params=[model.wte.weight], lr=EMBEDDING_LR * dmodel_lr_scale),
        dict(adam, params=list(model.value_embeds.parameters()), lr=EMBEDDING_LR * dmodel_lr_scale),
        dict(adam, params=[model.resid_lambdas], lr=SCALAR_LR * 0.01),
        dict(adam, params=[model.x0_lambdas], lr=SCALAR_LR, betas=(0.96, 0.95)),
    ]
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    assert len(matrices) == len(list(model.blocks.parameters())), "every block parameter must be a matrix for Muon"
    for shape in sorted({tuple(p.shape) for p in matrices}):
        groups.append(dict(kind="muon", params=[p for p in matrices if tuple(p.shape) == shape], lr=MATRIX_LR,
                           momentum=0.95, beta2=0.95, ns_steps=5, weight_decay=WEIGHT_DECAY))
    optimizer = MuonAdamW(groups, compile_muon=compile_muon)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


# ---------------------------------------------------------------------------
# Schedules (progress in [0, 1]: training seconds / TIME_BUDGET, or tokens / TOKEN_BUDGET under a token budget)
# ---------------------------------------------------------------------------


def get_lr_multiplier(progress):
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO
    if WARMDOWN_RATIO <= 0 or progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    cooldown = (1.0 - progress) / WARMDOWN_RATIO  # 1 -> 0 over the warmdown
    return cooldown + (1.0 - cooldown) * FINAL_LR_FRAC


def get_muon_momentum(step):
    frac = min(step / 300, 1.0)  # low momentum early, while gradients change fast
    return (1 - frac) * 0.85 + frac * 0.95


def get_weight_decay(progress):
    return WEIGHT_DECAY * (1.0 - progress)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def main():
    t_start = time.time()
    torch.manual_seed(SEED)
    device = get_device()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for any fp32 matmul left outside autocast
    use_compile = device.type == "cuda" if COMPILE is None else bool(COMPILE)
    autocast_ctx = autocast_context(device)

    tokenizer = Tokenizer.load()
    vocab_size = tokenizer.get_vocab_size()
    config = model_config(vocab_size, MAX_SEQ_LEN)
    with torch.device("meta"):
        model = GPT(config)  # no memory, no init cost; materialised below
    model.to_empty(device=device)
    model.init_weights()
    backend, why = pick_attention(device, MAX_SEQ_LEN, model.window_sizes)  # builds its masks before compiling
    model.attn_backend = backend
    print(f"attention: {backend} ({why})", flush=True)
    num_params = model.num_params()
    flops_per_token = model.estimate_flops()
    print(f"model: depth {config.n_layer}, dim {config.n_embd}, heads {config.n_head}, vocab {vocab_size}, "
          f"windows {model.window_sizes}, {num_params / 1e6:.1f}M params", flush=True)

    tokens_per_fwdbwd = DEVICE_BATCH_SIZE * MAX_SEQ_LEN
    if TOTAL_BATCH_SIZE % tokens_per_fwdbwd:
        print(f"TOTAL_BATCH_SIZE ({TOTAL_BATCH_SIZE}) must be a multiple of DEVICE_BATCH_SIZE * MAX_SEQ_LEN "
              f"({DEVICE_BATCH_SIZE} * {MAX_SEQ_LEN} = {tokens_per_fwdbwd}); change one of the two")
        print("FAIL")
        sys.exit(1)
    grad_accum_steps = TOTAL_BATCH_SIZE // tokens_per_fwdbwd
    optimizer = make_optimizer(model, compile_muon=use_compile)
    train_model = torch.compile(model, dynamic=False) if use_compile else model
    print(f"compile: {'on' if use_compile else 'off'} (COMPILE = {COMPILE}, device {device.type})", flush=True)
    budget = f"token budget: {TOKEN_BUDGET:,} tokens" if TOKEN_BUDGET else f"time budget: {TIME_BUDGET:g}s"
    print(f"{budget}, {TOTAL_BATCH_SIZE:,} tokens/step, grad accumulation {grad_accum_steps}, "
          f"eval tokens {EVAL_TOKENS:,}", flush=True)

    train_loader = make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train", device=device)
    x, y, epoch = next(train_loader)
    peak = peak_flops(device)
    smooth_loss, total_training_time, step = 0.0, 0.0, 0
    spent = False  # the loader ran dry: the token budget is spent
    while True:
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(grad_accum_steps):
            with autocast_ctx:
                loss = train_model(x, y)
            train_loss = loss.detach()
            (loss / grad_accum_steps).backward()
            batch = next(train_loader, None)  # fetch the next batch while the device is still busy
            if batch is None:
                spent = True
                break
            x, y, epoch = batch

        if TOKEN_BUDGET:
            progress = min(step * TOTAL_BATCH_SIZE / TOKEN_BUDGET, 1.0)
        else:
            progress = min(total_training_time / TIME_BUDGET, 1.0)
        lrm = get_lr_multiplier(progress)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if group["kind"] == "muon":
                group["momentum"] = get_muon_momentum(step)
                group["weight_decay"] = get_weight_decay(progress)
        optimizer.step()
        model.zero_grad(set_to_none=True)

        loss_f = train_loss.item()  # also a sync point
        if not math.isfinite(loss_f) or loss_f > 100:  # fast fail: a diverged run only wastes the budget
            print(f"loss {loss_f} at step {step}: training diverged")
            print("FAIL")
            sys.exit(1)
        synchronize(device)
        dt = time.perf_counter() - t0
        if step > 0:  # step 0 compiles and warms up; the runner's clock, too, starts after its optimizer step
            total_training_time += dt

        smooth_loss = 0.9 * smooth_loss + 0.1 * loss_f
        debiased = smooth_loss / (1 - 0.9 ** (step + 1))
        tok_per_sec = int(TOTAL_BATCH_SIZE / dt)
        mfu = 100 * flops_per_token * TOTAL_BATCH_SIZE / dt / peak
        if TOKEN_BUDGET:
            remaining = max(0, TOKEN_BUDGET - (step + 1) * TOTAL_BATCH_SIZE) / max(tok_per_sec, 1)
        else:
            remaining = max(0.0, TIME_BUDGET - total_training_time)
        print(f"step {step:05d} ({100 * progress:.1f}%) | loss: {debiased:.6f} | lrm: {lrm:.2f} | "
              f"dt: {dt * 1000:.0f}ms | tok/sec: {tok_per_sec:,} | mfu: {mfu:.1f}% | epoch: {epoch} | "
              f"remaining: {remaining:.0f}s", flush=True)

        # The model's objects live for the whole run; a cyclic GC pass mid-training only causes ~500ms stalls.
        if step == 0:
            gc.collect()
            gc.freeze()
            gc.disable()
        elif (step + 1) % 5000 == 0:
            gc.collect()

        step += 1
        if spent or (not TOKEN_BUDGET and total_training_time >= TIME_BUDGET):
            break

    total_tokens = step * TOTAL_BATCH_SIZE
    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)
    timed_steps = max(step - 1, 0)  # steps whose time counted (see above)
    mfu_percent = (100 * flops_per_token * TOTAL_BATCH_SIZE * timed_steps / total_training_time / peak
                   if total_training_time > 0 else 0.0)
    peak_vram = peak_memory_mb(device)
    t_end = time.time()

    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {total_training_time:.1f}")
    print(f"total_seconds:    {t_end - t_start:.1f}")
    print(f"peak_vram_mb:     {peak_vram:.1f}")
    print(f"mfu_percent:      {mfu_percent:.2f}")
    print(f"total_tokens_M:   {total_tokens / 1e6:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.1f}")
    print(f"depth:            {DEPTH}")


if __name__ == "__main__":
    main()
