"""Training-step throughput of the template train.py under a profile: tokens/s and MFU.

Builds the model and optimiser exactly as train.py does (its own functions, with the profile's CAPS constants),
feeds random tokens (data loading is measured by bench/dataloader.py), and times full optimiser steps after a
warm-up (compilation included in the warm-up, not in the figure).

    python bench/train_step.py [--profile cpu] [--steps 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from autoresearch.harness.device import autocast_context, get_device, peak_flops, peak_memory_mb, synchronize
from autoresearch.settings import PROFILES, Settings
from autoresearch.workspace import set_constants, template_text


def load_template(profile: str, workdir: Path):
    """The template as a module, with the profile's constants and a workspace holding the profile's settings."""
    settings = Settings.from_profile(profile)
    (workdir / "autoresearch.toml").write_text(settings.to_toml())
    os.environ["AUTORESEARCH_WORKSPACE"] = str(workdir)
    source = set_constants(template_text("train.py"), PROFILES[profile].train_constants)
    path = workdir / "train.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("bench_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tr, settings = load_template(args.profile, Path(tmp))
        device = get_device()
        use_compile = {"auto": device.type == "cuda", "on": True, "off": False}[args.compile]
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        T, V = settings.max_seq_len, settings.vocab_size
        config = tr.model_config(V, T)
        with torch.device("meta"):
            model = tr.GPT(config)
        model.to_empty(device=device)
        model.init_weights()
        backend, why = tr.pick_attention(device, T, model.window_sizes)  # builds its masks before compiling
        model.attn_backend = backend
        optimizer = tr.make_optimizer(model, compile_muon=use_compile)
        train_model = torch.compile(model, dynamic=False) if use_compile else model
        B = tr.DEVICE_BATCH_SIZE
        accum = tr.TOTAL_BATCH_SIZE // (B * T)
        x = torch.randint(0, V, (B, T), device=device)
        y = torch.randint(0, V, (B, T), device=device)

        def step() -> None:
            for _ in range(accum):
                with autocast_context(device):
                    loss = train_model(x, y)
                (loss / accum).backward()
            optimizer.step()
            model.zero_grad(set_to_none=True)

        name = torch.cuda.get_device_name() if device.type == "cuda" else device.type
        print(f"profile {args.profile} on {device} ({name}), "
              f"attention {backend} ({why}), compile {'on' if use_compile else 'off'}")
        print(f"model {model.num_params() / 1e6:.1f}M params, depth {config.n_layer}, dim {config.n_embd}, "
              f"{tr.TOTAL_BATCH_SIZE:,} tokens/step ({B} x {T} x {accum} accumulation)")
        for _ in range(args.warmup):
            step()
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize(device)
        dt = (time.perf_counter() - t0) / args.steps
        tps = tr.TOTAL_BATCH_SIZE / dt
        mfu = 100 * model.estimate_flops() * tps / peak_flops(device)
        print(f"step time {dt * 1000:.1f} ms | {tps:,.0f} tokens/s | MFU {mfu:.1f}% | peak memory "
              f"{peak_memory_mb(device):,.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
