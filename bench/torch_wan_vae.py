#!/usr/bin/env python3
"""The official Wan-2.1 VAE (wan/modules/vae.py of a user's Wan-Video/Wan2.1 checkout) timed for bench/wan_vae.ts.

Nothing of the official code is copied here: the file is imported from --official DIR as it is. Its only imports
outside the standard library and torch are `einops.rearrange` (two patterns, folding time into the batch and back)
and `torch.cuda.amp` (used only by the `WanVAE` wrapper, which this script does not call); a minimal `einops` stub
is installed when the real package is missing, and on torch < 2.0 (Debian's python3-torch 1.13) a plain
`F.scaled_dot_product_attention` (softmax(q k^T / sqrt(d)) v, the only form the VAE's middle attention calls), so
Debian's python3-torch suffices.

    torch_wan_vae.py --official DIR --config CFG.json --weights W.safetensors --input X.safetensors --reps N
                     [--threads 2] [--out OUT.safetensors]

Loads the weights strictly into `WanVAE_(**config)`, then for each rep times `encode(x, scale)` (normalised mu,
chunks of 1, 4, 4, ... frames with the feature cache) and `decode(z, scale)` (one latent at a time, unclamped), and
prints one JSON line: encode_ms, decode_ms (lists), rss_after_load_mb, peak_rss_mb (ru_maxrss), versions. --out
writes the first rep's `latent` and `reconstruction_raw` for the accuracy check.
"""
import argparse
import importlib.util
import json
import os
import re
import sys
import time
import types

import torch

from torch_common import load_safetensors, peak_rss_mb, save_safetensors


def install_einops_stub():
    try:
        import einops  # noqa: F401

        return "einops " + getattr(einops, "__version__", "?")
    except ImportError:
        pass

    def rearrange(x, pattern, **axes):
        p = re.sub(r"\s+", " ", pattern.replace("->", " -> ")).strip()
        if p == "b c t h w -> (b t) c h w":
            b, c, t, h, w = x.shape
            return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        if p == "(b t) c h w -> b c t h w":
            t = axes["t"]
            bt, c, h, w = x.shape
            return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)
        raise NotImplementedError(f"einops stub: pattern {pattern!r} is not one the Wan VAE uses")

    mod = types.ModuleType("einops")
    mod.rearrange = rearrange
    sys.modules["einops"] = mod
    return "einops stub (bench/torch_wan_vae.py)"


def install_sdpa_shim():
    """torch < 2.0 has no F.scaled_dot_product_attention; the official AttentionBlock calls it with q, k, v only
    (no mask, no dropout, default scale 1/sqrt(d)), which is softmax(q k^T / sqrt(d)) v."""
    import torch.nn.functional as F

    if hasattr(F, "scaled_dot_product_attention"):
        return "torch's scaled_dot_product_attention"

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        if attn_mask is not None or dropout_p or is_causal:
            raise NotImplementedError("sdpa shim: only the plain call the Wan VAE makes is supported")
        w = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5), dim=-1)
        return torch.matmul(w, v)

    F.scaled_dot_product_attention = sdpa
    return "scaled_dot_product_attention shim (bench/torch_wan_vae.py, torch < 2.0)"


def load_official(root):
    path = os.path.join(root, "wan", "modules", "vae.py")
    if not os.path.isfile(path):
        sys.exit(f"torch_wan_vae.py: no wan/modules/vae.py under {root} (a checkout of Wan-Video/Wan2.1 is needed)")
    spec = importlib.util.spec_from_file_location("wan_official_vae", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    einops_note = install_einops_stub()
    sdpa_note = install_sdpa_shim()
    vae, path = load_official(a.official)
    cfg = json.load(open(a.config))
    stats = {k: cfg.pop(k) for k in ("latents_mean", "latents_std")}
    model = vae.WanVAE_(**cfg).eval().requires_grad_(False)
    sd = load_safetensors(a.weights)
    model.load_state_dict(sd, strict=True)
    del sd
    # as WanVAE.__init__: scale = [mean, 1 / std] (float32)
    mean = torch.tensor(stats["latents_mean"], dtype=torch.float32)
    scale = [mean, 1.0 / torch.tensor(stats["latents_std"], dtype=torch.float32)]
    x = load_safetensors(a.input)["input"]
    after_load = peak_rss_mb()
    enc, dec = [], []
    with torch.no_grad():
        for r in range(a.reps):
            t0 = time.perf_counter()
            z = model.encode(x, scale)
            t1 = time.perf_counter()
            y = model.decode(z, scale)
            t2 = time.perf_counter()
            enc.append((t1 - t0) * 1e3)
            dec.append((t2 - t1) * 1e3)
            if r == 0 and a.out:
                save_safetensors(a.out, {"latent": z, "reconstruction_raw": y})
            del z, y
    print(
        json.dumps(
            {
                "encode_ms": enc,
                "decode_ms": dec,
                "rss_after_load_mb": after_load,
                "peak_rss_mb": peak_rss_mb(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "official": path,
                "einops": einops_note,
                "sdpa": sdpa_note,
            }
        )
    )


if __name__ == "__main__":
    main()
