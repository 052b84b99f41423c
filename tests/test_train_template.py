"""The train.py template: its optimizer math against references, the model's shape and masking, the CAPS block
that `init` and the search agent rewrite, the schedules, and the training loop's printed contract (with fakes)."""

import ast
import gc
import importlib.util
import math
import re
import sys
import uuid
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "src" / "autoresearch" / "template" / "train.py"
try:
    import autoresearch  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))

WORKSPACE_TOML = """\
[workspace]
profile = "cpu"
dataset = "embedded"
time_budget = 10.0
max_seq_len = 64
eval_tokens = 4096
vocab_size = 512
"""
CAPS_LINE = re.compile(r"^([A-Z][A-Z0-9_]*) = (.+?)\s*(#.*)?$")
TEMPLATE_DEFAULTS = {
    "ASPECT_RATIO": 64, "HEAD_DIM": 128, "WINDOW_PATTERN": "SSSL", "TOTAL_BATCH_SIZE": 2**19,
    "EMBEDDING_LR": 0.6, "UNEMBEDDING_LR": 0.004, "MATRIX_LR": 0.04, "SCALAR_LR": 0.5, "WEIGHT_DECAY": 0.2,
    "ADAM_BETAS": (0.8, 0.95), "WARMUP_RATIO": 0.0, "WARMDOWN_RATIO": 0.5, "FINAL_LR_FRAC": 0.0, "DEPTH": 8,
    "DEVICE_BATCH_SIZE": 128, "SEED": 42, "COMPILE": None,
}


def _clear_harness_caches():
    # The harness caches the workspace's settings per process; keep other tests from seeing ours (and vice versa).
    from autoresearch.harness import constants
    if hasattr(getattr(constants, "workspace_settings", None), "cache_clear"):
        constants.workspace_settings.cache_clear()


@pytest.fixture(scope="module")
def tr(tmp_path_factory):
    """The template imported as a module, inside a throwaway workspace."""
    ws = tmp_path_factory.mktemp("workspace")
    (ws / "autoresearch.toml").write_text(WORKSPACE_TOML)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTORESEARCH_WORKSPACE", str(ws))
        _clear_harness_caches()
        spec = importlib.util.spec_from_file_location(f"train_template_{uuid.uuid4().hex}", TEMPLATE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _clear_harness_caches()
    return module


def tiny_model(tr, n_layer=2, pattern="SL", seq_len=64, vocab=512, n_embd=32, n_head=2, live=False, seed=0):
    torch.manual_seed(seed)
    model = tr.GPT(tr.GPTConfig(sequence_len=seq_len, vocab_size=vocab, n_layer=n_layer, n_head=n_head,
                                n_embd=n_embd, window_pattern=pattern))
    model.init_weights()
    if live:  # zero-initialised projections would hide attention entirely; wake them up for masking tests
        for name, p in model.named_parameters():
            if "c_proj" in name or "ve_gate" in name or "lm_head" in name:
                torch.nn.init.normal_(p, std=0.2)
    return model


# ---------------------------------------------------------------------------
# optimizer
# ---------------------------------------------------------------------------


def test_adamw_group_matches_torch_adamw(tr):
    torch.manual_seed(0)
    p_ours = torch.randn(7, 5, requires_grad=True)
    p_ref = p_ours.detach().clone().requires_grad_(True)
    hp = dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.1)
    ours = tr.MuonAdamW([dict(kind="adamw", params=[p_ours], **hp)])
    ref = torch.optim.AdamW([p_ref], **hp)
    for _ in range(5):
        g = torch.randn(7, 5)
        p_ours.grad, p_ref.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
        torch.testing.assert_close(p_ours.detach(), p_ref.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(p_ours.detach(), torch.zeros(7, 5))


def test_adamw_on_bf16_params_keeps_fp32_moments_and_rounds_once(tr):
    # On CUDA the embeddings are bf16 params; their update must be the fp32 AdamW update, rounded once to bf16.
    torch.manual_seed(0)
    p_ours = torch.randn(7, 5).bfloat16().requires_grad_(True)
    p_ref = p_ours.detach().float().requires_grad_(True)
    hp = dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    ours = tr.MuonAdamW([dict(kind="adamw", params=[p_ours], **hp)])
    ref = torch.optim.AdamW([p_ref], **hp)
    for _ in range(5):
        g = torch.randn(7, 5).bfloat16()
        p_ours.grad, p_ref.grad = g.clone(), g.float()
        ours.step()
        ref.step()
        assert p_ours.dtype == torch.bfloat16
        torch.testing.assert_close(p_ours.detach().float(), p_ref.detach(), rtol=2**-8, atol=1e-6)  # one rounding
        with torch.no_grad():
            p_ref.copy_(p_ours.float())  # follow our rounding, so each step is compared on its own
    state = ours.state[p_ours]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32
    torch.testing.assert_close(state["exp_avg_sq"], ref.state[p_ref]["exp_avg_sq"], rtol=1e-5, atol=1e-12)


def ref_polar(G, coeffs):
    """Polar Express written out plainly, in both orientations (no transposition trick)."""
    X = G / (torch.linalg.matrix_norm(G) * 1.02 + 1e-6)
    for a, b, c in coeffs:
        if X.shape[0] > X.shape[1]:
            A = X.T @ X
            X = a * X + X @ (b * A + c * A @ A)
        else:
            A = X @ X.T
            X = a * X + (b * A + c * A @ A) @ X
    return X


def ref_muon_update(p, grad, st, lr, momentum, wd, beta2, coeffs):
    """Reference Muon for one matrix: Nesterov momentum, Polar Express, NorMuon, cautious weight decay."""
    m, n = p.shape
    st.setdefault("buf", torch.zeros_like(p))
    st["buf"] = momentum * st["buf"] + (1 - momentum) * grad
    u = momentum * st["buf"] + (1 - momentum) * grad  # Nesterov look-ahead
    o = ref_polar(u, coeffs)
    per_row = m >= n
    mean_sq = (o**2).mean(dim=1 if per_row else 0, keepdim=True)
    st.setdefault("v", torch.zeros_like(mean_sq))
    st["v"] = beta2 * st["v"] + (1 - beta2) * mean_sq
    scaled = o / torch.sqrt(torch.clamp(st["v"], min=1e-10))
    scaled = scaled * (torch.linalg.matrix_norm(o) / torch.linalg.matrix_norm(scaled))
    eff_lr = lr * math.sqrt(max(1.0, m / n))
    same_sign = (scaled * p >= 0).to(p.dtype)
    return p - eff_lr * scaled - eff_lr * wd * p * same_sign


def test_muon_matches_reference(tr):
    torch.manual_seed(0)
    shapes = [(48, 16), (48, 16), (16, 48), (24, 24)]  # tall (stacked pair), wide, square
    params = [torch.randn(s).requires_grad_(True) for s in shapes]
    refs = [p.detach().clone() for p in params]
    states = [{} for _ in shapes]
    hp = dict(lr=0.02, momentum=0.9, weight_decay=0.1, beta2=0.95, ns_steps=5)
    groups = [dict(kind="muon", params=[params[0], params[1]], **hp),
              dict(kind="muon", params=[params[2]], **hp), dict(kind="muon", params=[params[3]], **hp)]
    opt = tr.MuonAdamW(groups)
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            refs[i] = ref_muon_update(refs[i], g, states[i], hp["lr"], hp["momentum"], hp["weight_decay"],
                                      hp["beta2"], tr.polar_express_coeffs)
            torch.testing.assert_close(params[i].detach(), refs[i], rtol=1e-4, atol=1e-5)


def test_muon_step_function_is_callable_directly(tr):
    torch.manual_seed(1)
    p, g = torch.randn(2, 8, 4), torch.randn(2, 8, 4)
    before = p.clone()
    tr.muon_step(p, g, torch.zeros_like(p), torch.zeros(2, 8, 1), lr=0.01, momentum=0.95, wd=0.0, beta2=0.95)
    assert torch.isfinite(p).all() and not torch.equal(p, before)


@pytest.mark.parametrize("shape", [(32, 96), (96, 32)])
def test_polar_express_approximates_the_polar_factor(tr, shape):
    torch.manual_seed(0)
    G = torch.randn(shape)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    exact = U @ Vh
    X = tr.polar_express(G)
    assert X.shape == G.shape
    sv = torch.linalg.svdvals(X)
    assert sv.min() > 0.75 and sv.max() < 1.25, sv  # an approximation: singular values near 1, not at 1
    assert (X - exact).norm() / exact.norm() < 0.2


def test_optimizer_groups_cover_every_parameter_once(tr):
    model = tiny_model(tr)
    opt = tr.make_optimizer(model)
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    for g in opt.param_groups:
        if g["kind"] == "muon":
            assert len({tuple(p.shape) for p in g["params"]}) == 1
            assert all(p.ndim == 2 for p in g["params"])
    scale = (32 / 768) ** -0.5
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(model.wte.weight)] == pytest.approx(tr.EMBEDDING_LR * scale)
    assert lrs[id(model.lm_head.weight)] == pytest.approx(tr.UNEMBEDDING_LR * scale)


# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------


def test_parameter_count_of_the_cuda_profile_model(tr):
    with torch.device("meta"):
        model = tr.GPT(tr.model_config(vocab_size=8192, sequence_len=2048, depth=8))
    cfg = model.config
    assert (cfg.n_embd, cfg.n_head, len(model.value_embeds)) == (512, 4, 4)
    assert round(model.num_params() / 1e6, 1) == 50.3
    blocks = sum(p.numel() for p in model.blocks.parameters())
    assert round(blocks / 1e6, 1) == 25.2
    assert model.estimate_flops() > 6 * blocks


def test_window_sizes_follow_the_pattern_and_end_long(tr):
    windows = lambda pattern, n: tr.GPT.compute_window_sizes(tr.GPTConfig(sequence_len=2048, n_layer=n,
                                                                          window_pattern=pattern))
    assert windows("SSSL", 8) == [1024, 1024, 1024, 2048, 1024, 1024, 1024, 2048]
    assert windows("S", 3) == [1024, 1024, 2048]
    assert windows("L", 2) == [2048, 2048]
    with pytest.raises(AssertionError):
        windows("SXL", 2)


def test_forward_backward_on_cpu(tr):
    model = tiny_model(tr)
    idx = torch.randint(0, 512, (2, 64))
    logits = model(idx)
    assert logits.shape == (2, 64, 512) and logits.dtype == torch.float32
    assert logits.abs().max() <= 15.0
    loss = model(idx, idx.roll(-1, dims=1))
    assert torch.isfinite(loss) and abs(loss.item() - math.log(512)) < 0.1
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Zero-initialised output projections block some gradients at step 0; after one step every weight learns.
    opt = tr.make_optimizer(model)
    opt.step()
    model.zero_grad(set_to_none=True)
    model(idx, idx.roll(-1, dims=1)).backward()
    for name, p in model.named_parameters():
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_embeddings_stay_fp32_on_cpu_and_train_in_bf16_under_autocast(tr):
    model = tiny_model(tr)
    assert model.wte.weight.dtype == torch.float32  # bf16 storage is for CUDA only
    # What init_weights does on CUDA, checked on CPU: bf16 tables, the rest under autocast, one optimizer step.
    model.wte.to(dtype=torch.bfloat16)
    for ve in model.value_embeds.values():
        ve.to(dtype=torch.bfloat16)
    opt = tr.make_optimizer(model)
    idx = torch.randint(0, 512, (2, 64))
    before = model.wte.weight.detach().clone()
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(idx, idx.roll(-1, dims=1))
        loss.backward()
        opt.step()
        model.zero_grad(set_to_none=True)
    assert torch.isfinite(loss) and model.wte.weight.dtype == torch.bfloat16
    assert not torch.equal(model.wte.weight, before)
    assert opt.state[model.wte.weight]["exp_avg_sq"].dtype == torch.float32


def test_causality_with_sliding_window(tr):
    model = tiny_model(tr, n_layer=2, pattern="SL", live=True)
    assert model.window_sizes[0] < 64  # the short window is active at T = 64
    idx = torch.randint(0, 512, (1, 64))
    t = 40
    changed = idx.clone()
    changed[0, t + 1:] = torch.randint(0, 512, (64 - t - 1,))
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=1e-5)
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-3  # the change is visible where it should be


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_sliding_window_hides_tokens_beyond_it(tr, backend):
    # One layer, so nothing reaches position t through another layer. The last-layer-is-long rule (tested above)
    # would make that layer L, so the windows are set directly.
    model = tiny_model(tr, n_layer=1, live=True)
    model.attn_backend = backend
    short, t = 32, 50
    idx = torch.randint(0, 512, (1, 64))

    def logits_at_t_change(pos, window):
        model.window_sizes = [window]
        changed = idx.clone()
        changed[0, pos] = (idx[0, pos] + 1) % 512
        with torch.no_grad():
            return (model(idx)[0, t] - model(changed)[0, t]).abs().max().item()

    assert logits_at_t_change(t - short - 1, short) < 1e-5  # just outside the window: invisible
    assert logits_at_t_change(t - short, short) > 1e-3      # the window's oldest token: visible
    assert logits_at_t_change(t - short - 1, 64) > 1e-3     # full context: visible


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_and_sdpa_masks_agree(tr):
    model = tiny_model(tr, n_layer=2, pattern="SL", live=True)
    idx = torch.randint(0, 512, (2, 64))
    with torch.no_grad():
        a = model(idx)
        model.attn_backend = "flex"
        b = model(idx)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_pick_attention_off_cuda_is_sdpa_and_says_why(tr):
    backend, why = tr.pick_attention(torch.device("cpu"))
    assert backend == "sdpa" and "no CUDA" in why


# ---------------------------------------------------------------------------
# hyperparameter block and schedules
# ---------------------------------------------------------------------------


def test_caps_constants_are_simple_literal_lines(tr):
    source = TEMPLATE.read_text()
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name) and re.fullmatch(r"[A-Z][A-Z0-9_]*", t.id)]
            if not names:
                continue
            assert node.lineno == node.end_lineno, f"{names} spans several lines"
            m = CAPS_LINE.match(lines[node.lineno - 1])
            assert m, f"line {node.lineno} is not `NAME = literal  # comment`: {lines[node.lineno - 1]!r}"
            assert m.group(1) not in found, f"{m.group(1)} assigned twice"
            found[m.group(1)] = ast.literal_eval(m.group(2))
            assert found[m.group(1)] == getattr(tr, m.group(1))
    assert found == TEMPLATE_DEFAULTS
    comment_cols = {lines[i].index("#") for i, line in enumerate(lines) if CAPS_LINE.match(line)}
    assert len(comment_cols) == 1, "trailing comments of the CAPS block are not aligned"


def test_lr_schedule(tr, monkeypatch):
    f = tr.get_lr_multiplier  # defaults: no warmup, warmdown over the last half to 0
    assert [f(p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)] == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0])
    monkeypatch.setattr(tr, "WARMUP_RATIO", 0.1)
    monkeypatch.setattr(tr, "FINAL_LR_FRAC", 0.1)
    assert [f(p) for p in (0.0, 0.05, 0.1, 0.75, 1.0)] == pytest.approx([0.0, 0.5, 1.0, 0.55, 0.1])
    monkeypatch.setattr(tr, "WARMDOWN_RATIO", 0.0)
    assert f(1.0) == 1.0
    assert [tr.get_muon_momentum(s) for s in (0, 150, 300, 10_000)] == pytest.approx([0.85, 0.9, 0.95, 0.95])
    assert [tr.get_weight_decay(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.2, 0.1, 0.0])


# ---------------------------------------------------------------------------
# the training loop's printed contract, with a fake tokenizer, data and metric
# ---------------------------------------------------------------------------

PROGRESS_LINE = re.compile(r"^step \d{5} \(\d+\.\d%\) \| loss: \d+\.\d{6} \| lrm: \d\.\d\d \| dt: \d+ms \| "
                           r"tok/sec: [\d,]+ \| mfu: \d+\.\d% \| epoch: \d+ \| remaining: \d+s$")
SUMMARY_KEYS = ["val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent", "total_tokens_M",
                "num_steps", "num_params_M", "depth"]


@pytest.fixture
def fake_run(tr, monkeypatch):
    class FakeTokenizer:
        @classmethod
        def load(cls):
            return cls()

        def get_vocab_size(self):
            return 320

    def fake_loader(tok, B, T, split, device=None):
        g = torch.Generator().manual_seed(0)
        served = 0
        while not tr.TOKEN_BUDGET or served + B * T <= tr.TOKEN_BUDGET:  # ends at the budget, as the harness's
            served += B * T
            row = torch.randint(0, 320, (B, T + 1), generator=g)
            yield row[:, :-1].to(device), row[:, 1:].to(device), 1

    def fake_eval(model, tok, batch_size):
        logits = model(torch.zeros(batch_size, 32, dtype=torch.long))
        assert logits.shape == (batch_size, 32, 320)
        return 1.5

    for name, value in dict(Tokenizer=FakeTokenizer, make_dataloader=fake_loader, evaluate_bpb=fake_eval,
                            get_device=lambda: torch.device("cpu"), peak_flops=lambda device: 1e12,
                            MAX_SEQ_LEN=32, TIME_BUDGET=0.3, TOKEN_BUDGET=0, DEPTH=1, ASPECT_RATIO=32, HEAD_DIM=16,
                            DEVICE_BATCH_SIZE=2, TOTAL_BATCH_SIZE=128, COMPILE=False).items():
        monkeypatch.setattr(tr, name, value)
    yield tr
    gc.enable()  # main() freezes and disables the cyclic GC for the rest of its process
    gc.unfreeze()


def summary_of(out: list[str]) -> dict[str, str]:
    summary = out[out.index("---") + 1:]
    assert [line.split(":")[0] for line in summary] == SUMMARY_KEYS
    return {k: v.strip() for k, v in (line.split(":", 1) for line in summary)}


def test_main_prints_progress_and_the_summary_block(fake_run, capsys):
    """Under a time budget: however busy the machine, training runs until 0.3 s of timed steps (step 0, which
    compiles, is not timed, so at least two steps)."""
    fake_run.main()
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("attention: sdpa (no CUDA") for line in out)
    progress = [line for line in out if line.startswith("step ")]
    assert len(progress) >= 2 and all(PROGRESS_LINE.match(line) for line in progress), progress[:3]
    values = summary_of(out)
    assert values["val_bpb"] == "1.500000" and values["depth"] == "1"
    assert int(values["num_steps"]) == len(progress)
    assert float(values["training_seconds"]) >= 0.3


@pytest.mark.slow
def test_under_a_token_budget_main_trains_until_the_loader_ends(fake_run, monkeypatch, capsys):
    """64-token micro-batches, 128 tokens a step: one batch before the loop, two a step, and the last step is cut
    short when the loader ends at 1,600 tokens: 13 steps on any machine, the schedule following tokens."""
    monkeypatch.setattr(fake_run, "TOKEN_BUDGET", 12 * 128 + 64)
    fake_run.main()
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("token budget: 1,600 tokens") for line in out)
    progress = [line for line in out if line.startswith("step ")]
    assert len(progress) == 13 and all(PROGRESS_LINE.match(line) for line in progress)
    for k, line in enumerate(progress):  # progress = tokens trained / budget; warmdown over the second half
        frac = k * 128 / 1600
        lrm = 1.0 if frac < 1 - fake_run.WARMDOWN_RATIO else (1 - frac) / fake_run.WARMDOWN_RATIO
        assert line.startswith(f"step {k:05d} ({100 * frac:.1f}%)") and f"lrm: {lrm:.2f}" in line, line
    assert summary_of(out)["num_steps"] == "13"


def test_main_fails_fast_on_nan_loss(fake_run, monkeypatch, capsys):
    monkeypatch.setattr(fake_run, "EMBEDDING_LR", float("nan"))  # poisons the weights after the first step
    with pytest.raises(SystemExit) as exit_info:
        fake_run.main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().out.splitlines()[-1] == "FAIL"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (checks the FA3/flex path and compile)")
def test_cuda_attention_path_matches_sdpa_and_trains(tr):
    device = torch.device("cuda")
    model = tiny_model(tr, n_layer=2, pattern="SL", seq_len=256, n_embd=64, n_head=2, live=True).to(device)
    idx = torch.randint(0, 512, (2, 256), device=device)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        reference = model(idx)  # sdpa: is_causal for the long layer, a boolean mask for the short one
    backend, why = tr.pick_attention(device, 256, model.window_sizes)
    print(f"attention: {backend} ({why})")
    assert backend in ("fa3", "flex"), why
    model.attn_backend = backend
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        torch.testing.assert_close(compiled(idx), reference, rtol=0.05, atol=0.1)
    # gradients through the fast backend against SDPA's (flex has no backward on CPU: this is where it is checked)
    grads = {}
    for name, m in (("sdpa", model), (backend, compiled)):
        model.attn_backend = name
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            m(idx, idx.roll(-1, dims=1)).backward()
        grads[name] = [p.grad.float().clone() for p in model.parameters()]
    model.attn_backend = backend
    model.zero_grad(set_to_none=True)
    for ours, ref in zip(grads[backend], grads["sdpa"]):
        assert (ours - ref).norm() <= 0.05 * ref.norm() + 1e-6
    opt = tr.make_optimizer(model, compile_muon=True)
    losses = []
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(idx, idx.roll(-1, dims=1))
        loss.backward()
        opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
