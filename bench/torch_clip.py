#!/usr/bin/env python3
"""The official CLIP visual tower (wan/modules/clip.py of a user's Wan-Video/Wan2.1 checkout) timed for bench/clip.ts.

Nothing of the official code is copied here: clip.py is imported from --official DIR as it is, as a module of a stub
package whose other members are minimal stand-ins for what clip.py imports but the visual tower does not run:
- `.attention.flash_attention`: plain fp32 attention, softmax(q k^T * scale) v over (B, L, heads, d) tensors — what
  the fixtures use (the official one is flash-attn in half precision on a GPU, which a CPU does not have);
- `.tokenizers.HuggingfaceTokenizer`, `.xlm_roberta.XLMRoberta`: placeholders (the text tower is not built);
- `torchvision.transforms` when torchvision is missing (Debian's python3-torch has none): placeholders (only
  `_clip(return_transforms=True)` uses them, which this script does not call).

    torch_clip.py --official DIR --config CFG.json --weights W.safetensors --input X.safetensors --reps N
                  [--threads 2] [--out OUT.safetensors]

Builds `VisionTransformer` exactly as `XLMRobertaCLIP` does for its `visual` (pool 'token', pre_norm, gelu), loads
the `visual.*` weights strictly, and for each rep times `visual(pixel_values, use_31_block=True)` in fp32 without
grad; prints one JSON line: features_ms and cpu_ms (process CPU time; lists), rss_after_load_mb, peak_rss_mb, versions. --out writes the first
rep's `features` for the accuracy check.
"""
import argparse
import importlib.util
import json
import os
import sys
import time
import types

import torch

from torch_common import load_safetensors, peak_rss_mb, save_safetensors

PKG = "wan_official_clip_pkg"


def install_stubs(root):
    notes = []
    try:
        import torchvision.transforms  # noqa: F401

        notes.append("torchvision (real)")
    except ImportError:
        tv = types.ModuleType("torchvision")
        tr = types.ModuleType("torchvision.transforms")

        class _Placeholder:
            def __init__(self, *a, **k):
                raise NotImplementedError("torchvision stub (bench/torch_clip.py): transforms are not used by the benchmark")

        for n in ("Compose", "Resize", "ToTensor", "Normalize"):
            setattr(tr, n, _Placeholder)
        tr.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
        tv.transforms = tr
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tr
        notes.append("torchvision stub")

    pkg = types.ModuleType(PKG)
    pkg.__path__ = [os.path.join(root, "wan", "modules")]
    sys.modules[PKG] = pkg

    att = types.ModuleType(PKG + ".attention")

    def flash_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None,
                        causal=False, window_size=(-1, -1), deterministic=False, dtype=None, version=None):
        if q_lens is not None or k_lens is not None or causal or dropout_p:
            raise NotImplementedError("flash_attention stub: only the plain call of the CLIP visual tower is supported")
        scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
        qh, kh, vh = (t.transpose(1, 2).float() for t in (q, k, v))  # (B, heads, L, d)
        w = torch.softmax(torch.matmul(qh, kh.transpose(-2, -1)) * scale, dim=-1)
        return torch.matmul(w, vh).transpose(1, 2).type_as(q)

    att.flash_attention = flash_attention
    sys.modules[PKG + ".attention"] = att

    tok = types.ModuleType(PKG + ".tokenizers")
    tok.HuggingfaceTokenizer = object
    sys.modules[PKG + ".tokenizers"] = tok
    xr = types.ModuleType(PKG + ".xlm_roberta")
    xr.XLMRoberta = torch.nn.Module
    sys.modules[PKG + ".xlm_roberta"] = xr
    notes.append("flash_attention -> plain fp32 softmax attention stub")
    return "; ".join(notes)


def load_official(root):
    path = os.path.join(root, "wan", "modules", "clip.py")
    if not os.path.isfile(path):
        sys.exit(f"torch_clip.py: no wan/modules/clip.py under {root} (a checkout of Wan-Video/Wan2.1 is needed)")
    spec = importlib.util.spec_from_file_location(PKG + ".clip", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[PKG + ".clip"] = mod
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
    notes = install_stubs(os.path.abspath(a.official))
    clip, path = load_official(os.path.abspath(a.official))
    c = json.load(open(a.config))
    # exactly the arguments XLMRobertaCLIP passes to its VisionTransformer (clip_xlm_roberta_vit_h_14's values)
    visual = clip.VisionTransformer(
        image_size=c["image_size"], patch_size=c["patch_size"], dim=c["vision_dim"], mlp_ratio=c["vision_mlp_ratio"],
        out_dim=c["embed_dim"], num_heads=c["vision_heads"], num_layers=c["vision_layers"], pool_type="token",
        pre_norm=True, post_norm=False, activation="gelu", norm_eps=c.get("norm_eps", 1e-5),
    ).eval().requires_grad_(False)
    sd = load_safetensors(a.weights)
    visual.load_state_dict({k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}, strict=True)
    del sd
    x = load_safetensors(a.input)["pixel_values"]
    after_load = peak_rss_mb()
    times, cpu = [], []
    with torch.no_grad():
        for r in range(a.reps):
            t0 = time.perf_counter()
            c0 = time.process_time()
            y = visual(x, use_31_block=True)
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
            if r == 0 and a.out:
                save_safetensors(a.out, {"features": y})
            del y
    print(json.dumps({
        "features_ms": times,
        "cpu_ms": cpu,
        "rss_after_load_mb": after_load,
        "peak_rss_mb": peak_rss_mb(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "official": path,
        "stubs": notes,
    }))


if __name__ == "__main__":
    main()
