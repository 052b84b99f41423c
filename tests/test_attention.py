"""The harness's attention: every backend computes the same windowed causal attention, the backend choice
(CUDA absent, a faked sm90 GPU with FA3 loadable or not, offline only), prepare's FA3 fetch, and the device
helpers' device index. No GPU needed: CUDA is faked where the logic under test only asks torch about it."""

from __future__ import annotations

import importlib
import math
import os
import sys
import types

import pytest
import torch
from click.testing import CliRunner
from hubserver import closed_port_url, hub_server  # noqa: F401 - hub_server is a fixture

from autoresearch.data.attention_kernel import fetch_attention_kernel
from autoresearch.harness import device as device_helpers

# The attention backends module (the package exports its `attention` function).
A = importlib.import_module("autoresearch.harness.attention_backends")
B, T, H, D = 2, 64, 2, 16
SLIDING, FULL = 20, T - 1


def reference_attention(q, k, v, window):
    """softmax(q k^T / sqrt(D)) v over the pairs the template documents: query i sees key j iff 0 <= i - j <= window.

    Written out with plain ops, independently of every backend. q, k, v: (B, T, H, D) -> (B, T, H, D).
    """
    i = torch.arange(q.size(1))[:, None]
    j = torch.arange(q.size(1))[None, :]
    allowed = (i - j >= 0) & (i - j <= window)  # (T, T)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(q.size(-1))  # (B, H, T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(dim=-1), v)


def qkv(seed=0, requires_grad=False, T=T):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, H, D, generator=g).requires_grad_(requires_grad) for _ in range(3)]


def grads(fn, q, k, v, window, seed=1):
    """Gradients of q, k, v for a fixed random projection of the output."""
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v, window)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * weight).sum().backward()
    return q.grad, k.grad, v.grad


@pytest.fixture(autouse=True)
def fresh_caches():
    # The module's caches are process-wide; each test starts from none and leaves none behind.
    A._kernels.clear()
    A._masks.clear()
    yield
    A._kernels.clear()
    A._masks.clear()


# ---------------------------------------------------------------------------
# the computation, on CPU
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("window", [SLIDING, FULL, 10 * T], ids=["sliding", "full", "beyond T"])
def test_sdpa_matches_the_reference_forward_and_backward(window):
    q, k, v = qkv()
    sdpa = lambda q, k, v, w: A.attention(q, k, v, w, "sdpa")
    torch.testing.assert_close(sdpa(q, k, v, window), reference_attention(q, k, v, window), rtol=1e-5, atol=1e-5)
    for ours, ref in zip(grads(sdpa, q, k, v, window), grads(reference_attention, q, k, v, window)):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_full_window_uses_is_causal_and_equals_the_masked_path(monkeypatch):
    q, k, v = qkv()
    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(A.F, "scaled_dot_product_attention", spy)
    full = A.attention(q, k, v, FULL, "sdpa")
    assert calls[-1].get("is_causal") is True and calls[-1].get("attn_mask") is None  # SDPA may pick flash
    A.attention(q, k, v, SLIDING, "sdpa")
    assert calls[-1].get("attn_mask") is not None and not calls[-1].get("is_causal", False)
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    masked = real_sdpa(qt, kt, vt, attn_mask=A._bool_mask(T, FULL, q.device)).transpose(1, 2)
    torch.testing.assert_close(full, masked, rtol=1e-5, atol=1e-6)


def test_masks_are_built_once_per_length_window_and_device():
    q, k, v = qkv()
    A.attention(q, k, v, SLIDING, "sdpa")
    mask = A._masks[("sdpa", T, SLIDING, "cpu", None)]
    A.attention(q, k, v, SLIDING, "sdpa")
    A.attention(q[:, :32], k[:, :32], v[:, :32], SLIDING, "sdpa")
    assert A._masks[("sdpa", T, SLIDING, "cpu", None)] is mask  # reused, not rebuilt
    assert set(A._masks) == {("sdpa", T, SLIDING, "cpu", None), ("sdpa", 32, SLIDING, "cpu", None)}
    A.attention(q, k, v, FULL, "sdpa")
    assert len(A._masks) == 2  # a full window needs no mask at all


def test_pick_attention_builds_the_masks_up_front():
    backend, _ = A.pick_attention("cpu", seq_len=T, windows=[SLIDING, FULL, SLIDING])
    assert backend == "sdpa" and set(A._masks) == {("sdpa", T, SLIDING, "cpu", None)}


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("window", [SLIDING, FULL], ids=["sliding", "full"])
def test_flex_block_mask_matches_sdpa_boolean_mask_forward(window):
    q, k, v = qkv()
    torch.testing.assert_close(A.attention(q, k, v, window, "flex"), A.attention(q, k, v, window, "sdpa"),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("window", [SLIDING, FULL], ids=["sliding", "full"])
def test_flex_block_mask_matches_sdpa_boolean_mask_backward(window):
    q, k, v = qkv()
    flex = lambda q, k, v, w: A.attention(q, k, v, w, "flex")
    try:
        flex_grads = grads(flex, q, k, v, window)
    except NotImplementedError as e:
        if "backward on CPU" not in str(e):
            raise
        pytest.skip(f"torch {torch.__version__} has no flex_attention backward on CPU ({e}); "
                    "test_cuda_attention_path_matches_sdpa_and_trains covers it on a GPU")
    sdpa = lambda q, k, v, w: A.attention(q, k, v, w, "sdpa")
    for ours, ref in zip(flex_grads, grads(sdpa, q, k, v, window)):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [100, 255], ids=["sliding", "full"])
def test_block_mask_blocks_are_the_boolean_masks_blocks(window):
    """What the kernels skip: a (query block, key block) tile is listed iff some pair in it may attend, and
    marked full iff every pair may (the kernels then skip the mask there)."""
    T, bs = 256, 128
    block_mask = A._mask("flex", T, window, torch.device("cpu"))
    dense = A._bool_mask(T, window, torch.device("cpu")).view(T // bs, bs, T // bs, bs).transpose(1, 2)  # tiles
    listed = block_mask.to_dense()[0, 0].bool()  # (T/bs, T/bs) partial or full tiles
    assert torch.equal(listed, dense.any(dim=(-2, -1)))
    full = torch.zeros_like(listed)
    if block_mask.full_kv_num_blocks is not None:
        for qb in range(T // bs):
            n = int(block_mask.full_kv_num_blocks[0, 0, qb])
            full[qb, block_mask.full_kv_indices[0, 0, qb, :n].long()] = True
    assert torch.equal(full, dense.all(dim=(-2, -1)))


@pytest.mark.slow
def test_compiled_flex_on_cpu_matches_sdpa():
    """The block-sparse kernel itself (eager flex computes densely): compiled, on CPU, forward only."""
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = qkv(T=256)
    A._kernels["flex"] = torch.compile(flex_attention, dynamic=False)
    torch.testing.assert_close(A.attention(q, k, v, 100, "flex"), reference_attention(q, k, v, 100),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_cached_masks_trace_into_one_graph(backend):
    # A compiled model looks the masks up inside its graph: no graph break, same numbers as eager.
    q, k, v = qkv()
    both = lambda q, k, v: A.attention(q, k, v, SLIDING, backend) + A.attention(q, k, v, FULL, backend)
    eager = both(q, k, v)
    torch.testing.assert_close(torch.compile(both, backend="eager", fullgraph=True)(q, k, v), eager)


def test_unknown_or_unloaded_backend_is_a_clear_error():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="unknown attention backend 'fa2'"):
        A.attention(q, k, v, FULL, "fa2")
    with pytest.raises(RuntimeError, match="call pick_attention"):
        A.attention(q, k, v, FULL, "fa3")


# ---------------------------------------------------------------------------
# FA3's call, with a stand-in kernel
# ---------------------------------------------------------------------------


class FakeFA3(types.ModuleType):
    """flash_attn_func with FA3's signature and window convention (left, right; -1 = unlimited)."""

    def __init__(self, returns_lse=False):
        super().__init__("fake_fa3")
        self.calls, self.returns_lse = [], returns_lse

    def flash_attn_func(self, q, k, v, causal=False, window_size=(-1, -1)):
        self.calls.append(dict(dtypes={q.dtype, k.dtype, v.dtype}, causal=causal, window_size=window_size))
        left = window_size[0] if window_size[0] >= 0 else q.size(1)
        y = reference_attention(q.float(), k.float(), v.float(), left).to(q.dtype)
        return (y, torch.zeros(1)) if self.returns_lse else y


@pytest.mark.parametrize("returns_lse", [False, True])
def test_fa3_gets_bf16_causal_and_the_left_window(returns_lse):
    fa3 = FakeFA3(returns_lse)
    A._kernels["fa3"] = fa3
    q, k, v = qkv()
    y = A.attention(q, k, v, SLIDING, "fa3")
    assert fa3.calls[-1] == dict(dtypes={torch.bfloat16}, causal=True, window_size=(SLIDING, 0))
    assert y.dtype == v.dtype and y.shape == (B, T, H, D)
    torch.testing.assert_close(y, reference_attention(q, k, v, SLIDING), rtol=0.05, atol=0.05)  # bf16
    A.attention(q, k, v, FULL, "fa3")
    assert fa3.calls[-1]["window_size"] == (-1, 0)  # unlimited: FA3's non-local kernel


# ---------------------------------------------------------------------------
# choosing the backend
# ---------------------------------------------------------------------------


def fake_gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


class FakeKernels(types.ModuleType):
    """The `kernels` package: get_kernel answers from the 'local cache' only if the hub is offline."""

    def __init__(self, module=None, error=None):
        super().__init__("kernels")
        self.module, self.error, self.calls = module, error, []

    def get_kernel(self, repo_id, *, version=None, revision=None, **kwargs):
        from huggingface_hub import constants, get_session
        from huggingface_hub.errors import OfflineModeIsEnabled

        self.calls.append(dict(repo_id=repo_id, version=version, env=os.environ.get("HF_HUB_OFFLINE"),
                               offline=constants.HF_HUB_OFFLINE))
        with pytest.raises(OfflineModeIsEnabled):  # any request to the hub fails before it leaves the process
            get_session().get(f"{closed_port_url()}/api/kernels/{repo_id}")
        if self.error is not None:
            raise self.error
        return self.module

    def install_kernel(self, repo_id, *, version=None, **kwargs):
        self.calls.append(dict(repo_id=repo_id, version=version, install=True))
        if self.error is not None:
            raise self.error
        return f"/cache/{repo_id}/build/torch-cuda"


@pytest.fixture
def no_fa3_source(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn_interface", None)  # `import flash_attn_interface` fails


@pytest.fixture
def hub_online(monkeypatch):
    """The hub client as the user left it (online); restored after the test whatever the code did."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return constants


def test_no_cuda_is_sdpa_and_says_why():
    backend, why = A.pick_attention(torch.device("cpu"))
    assert backend == "sdpa" and why.startswith("no CUDA") and "cpu" in why


def test_sm90_with_fa3_in_the_local_cache_is_fa3_loaded_offline(monkeypatch, no_fa3_source, hub_online):
    fake_gpu(monkeypatch, (9, 0))
    fa3 = FakeFA3()
    kernels = FakeKernels(module=fa3)
    monkeypatch.setitem(sys.modules, "kernels", kernels)
    backend, why = A.pick_attention(torch.device("cuda"))
    assert backend == "fa3" and A.FA3_REPO in why and "sm90" in why, why
    assert kernels.calls == [dict(repo_id=A.FA3_REPO, version=A.FA3_VERSION, env="1", offline=True)]
    assert A._kernels["fa3"] is fa3
    # offline only while loading: the process's hub settings are as before
    assert "HF_HUB_OFFLINE" not in os.environ and hub_online.HF_HUB_OFFLINE is False


def test_the_kernels_interface_submodule_is_used_when_the_top_has_no_flash_attn_func(monkeypatch, no_fa3_source,
                                                                                     hub_online):
    fake_gpu(monkeypatch, (9, 0))
    top = types.ModuleType("flash_attn3")
    top.flash_attn_interface = FakeFA3()
    monkeypatch.setitem(sys.modules, "kernels", FakeKernels(module=top))
    assert A.pick_attention("cuda:0")[0] == "fa3" and A._kernels["fa3"] is top.flash_attn_interface


def test_sm90_with_fa3_not_in_the_cache_falls_back_to_flex_and_says_how_to_fix(monkeypatch, no_fa3_source,
                                                                              hub_online):
    fake_gpu(monkeypatch, (9, 0))
    missing = ValueError("Version 1 of 'kernels-community/flash-attn3' is not available in the local cache")
    monkeypatch.setitem(sys.modules, "kernels", FakeKernels(error=missing))
    backend, why = A.pick_attention(torch.device("cuda"))
    assert backend == "flex" and "fa3" not in A._kernels
    assert "not loadable from the local cache" in why and "autoresearch prepare" in why and "compiled" in why, why
    assert callable(A._kernels["flex"])


def test_sm90_without_kernels_says_how_to_install_it(monkeypatch, no_fa3_source):
    fake_gpu(monkeypatch, (9, 0))
    monkeypatch.setitem(sys.modules, "kernels", None)
    backend, why = A.pick_attention(torch.device("cuda"))
    assert backend == "flex" and "pip install 'autoresearch[cuda]'" in why and "flash_attn_interface" in why, why


def test_sm90_without_kernels_takes_fa3_built_from_source(monkeypatch):
    fake_gpu(monkeypatch, (9, 0))
    monkeypatch.setitem(sys.modules, "kernels", None)
    source_build = FakeFA3()
    monkeypatch.setitem(sys.modules, "flash_attn_interface", source_build)
    backend, why = A.pick_attention(torch.device("cuda"))
    assert backend == "fa3" and "flash_attn_interface" in why and A._kernels["fa3"] is source_build


def test_other_gpus_get_compiled_flex_and_fa3_is_not_even_loaded(monkeypatch):
    fake_gpu(monkeypatch, (8, 0))
    kernels = FakeKernels(module=FakeFA3())
    monkeypatch.setitem(sys.modules, "kernels", kernels)
    backend, why = A.pick_attention(torch.device("cuda"))
    assert backend == "flex" and "needs Hopper (sm90), this GPU is sm80" in why and kernels.calls == []


# ---------------------------------------------------------------------------
# prepare fetches FA3 while it has the network
# ---------------------------------------------------------------------------


def test_fetch_on_a_machine_without_cuda_does_nothing_unless_asked(monkeypatch):
    kernels = FakeKernels()
    monkeypatch.setitem(sys.modules, "kernels", kernels)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    said = []
    assert fetch_attention_kernel(said.append) is False
    assert said == [] and kernels.calls == []


def test_fetch_without_the_kernels_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "kernels", None)
    said = []
    assert fetch_attention_kernel(said.append, force=True) is False
    assert len(said) == 1 and "pip install 'autoresearch[cuda]'" in said[0] and "flex_attention or SDPA" in said[0]


def test_fetch_downloads_fa3_when_cuda_is_there(monkeypatch, hub_server):
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    kernels = FakeKernels()
    monkeypatch.setitem(sys.modules, "kernels", kernels)
    said = []
    assert fetch_attention_kernel(said.append) is True
    assert kernels.calls == [dict(repo_id=A.FA3_REPO, version=A.FA3_VERSION, install=True)]
    assert "in the local cache" in said[-1] and "offline" in said[-1]


def test_fetch_without_network_says_so_and_goes_on(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    kernels = FakeKernels()
    monkeypatch.setitem(sys.modules, "kernels", kernels)
    said = []
    assert fetch_attention_kernel(said.append, force=True) is False
    assert kernels.calls == []  # nothing tried after the probe failed
    assert "no network" in said[0] and "Rerun prepare online" in said[0] and "flex_attention or SDPA" in said[0]


def test_a_failed_fetch_is_one_line_not_an_error(monkeypatch, hub_server):
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setitem(sys.modules, "kernels", FakeKernels(error=RuntimeError("no build for torch-cpu\nat all")))
    said = []
    assert fetch_attention_kernel(said.append, force=True) is False
    assert len(said) == 1 and "no build for torch-cpu at all" in said[0] and "autoresearch[cuda]" in said[0]


@pytest.mark.slow
def test_prepare_command_fetches_when_asked_and_survives_no_network(tiny_workspace, monkeypatch):
    from autoresearch.cli import cli

    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    kernels = FakeKernels()
    monkeypatch.setitem(sys.modules, "kernels", kernels)
    help_text = CliRunner().invoke(cli, ["prepare", "--help"]).output
    assert "--fetch-kernels" in help_text and "AUTORESEARCH_FETCH_KERNELS" in help_text
    r = CliRunner().invoke(cli, ["prepare", "--fetch-kernels"])
    assert r.exit_code == 0, r.output
    assert "prepared 'embedded'" in r.output and "FlashAttention 3 not fetched, no network" in r.output


# ---------------------------------------------------------------------------
# the sandbox opens the kernel's cache folder, and nothing else of the hub cache
# ---------------------------------------------------------------------------


def test_sandbox_reads_the_fa3_cache_folder_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from autoresearch.run import sandbox

    assert sandbox.KERNEL_REPOS == (A.FA3_REPO,)
    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.delenv("KERNELS_CACHE", raising=False)
    assert sandbox.kernel_cache_paths() == []  # not downloaded: nothing to open
    folder = hub / ("kernels--" + A.FA3_REPO.replace("/", "--"))
    folder.mkdir(parents=True)
    (hub / "models--someone--private").mkdir()
    assert sandbox.kernel_cache_paths() == [str(folder)]
    assert str(folder) in sandbox.system_read_paths() and str(hub) not in sandbox.system_read_paths()
    elsewhere = tmp_path / "kernels-cache" / ("models--" + A.FA3_REPO.replace("/", "--"))
    elsewhere.mkdir(parents=True)
    monkeypatch.setenv("KERNELS_CACHE", str(elsewhere.parent))
    assert sandbox.kernel_cache_paths() == [str(elsewhere)]


# ---------------------------------------------------------------------------
# device helpers honour the device index
# ---------------------------------------------------------------------------


def test_synchronize_and_peak_memory_ask_about_the_given_gpu(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: seen.append(("sync", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: seen.append(("peak", device)) or 2**21)
    device_helpers.synchronize(torch.device("cuda:1"))
    assert device_helpers.peak_memory_mb("cuda:1") == 2.0
    assert seen == [("sync", torch.device("cuda:1")), ("peak", torch.device("cuda:1"))]
