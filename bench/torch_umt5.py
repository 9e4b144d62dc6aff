#!/usr/bin/env python3
"""The official umT5 encoder (wan/modules/t5.py of a user's Wan-Video/Wan2.1 checkout, `T5Encoder`) timed for
bench/umt5.ts.

Nothing of the official code is copied here: the file is imported from --official DIR as it is, as a submodule of a
stand-in package so that its one relative import (`from .tokenizers import HuggingfaceTokenizer`, used only by the
`T5EncoderModel` wrapper this script does not call) finds a stub. `T5EncoderModel.__init__` evaluates
`torch.cuda.current_device()` as a default argument when the class is defined, which fails on a CPU-only torch; that
one call is pointed at 'cpu' for the import.

    torch_umt5.py --official DIR --config CFG.json --weights W.safetensors --inputs IO.safetensors --reps N
                  [--threads 2] [--dtype f32|bf16] [--out OUT.safetensors]

CFG.json holds T5Encoder's constructor arguments (vocab, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets,
shared_pos). IO.safetensors holds `ids` and `mask` (B, L). Loads the weights strictly (bf16 values widened to float32
by the loader, then the model cast to --dtype), then times --reps calls of `model(ids, mask)` (as T5EncoderModel
does: the whole padded length with the mask) and prints one JSON line: forward_ms (list), rss_after_load_mb,
peak_rss_mb (ru_maxrss), versions. --out writes the first rep's `hidden_states` (float32) for the accuracy check.
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


def load_official(root):
    moddir = os.path.join(root, "wan", "modules")
    path = os.path.join(moddir, "t5.py")
    if not os.path.isfile(path):
        sys.exit(f"torch_umt5.py: no wan/modules/t5.py under {root} (a checkout of Wan-Video/Wan2.1 is needed)")
    pkg = types.ModuleType("wan_official_modules")
    pkg.__path__ = [moddir]
    sys.modules[pkg.__name__] = pkg
    tok = types.ModuleType("wan_official_modules.tokenizers")
    tok.HuggingfaceTokenizer = None  # stub: only T5EncoderModel (not used here) tokenizes
    sys.modules[tok.__name__] = tok
    real_current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: "cpu"  # a default argument evaluated at class definition
    try:
        spec = importlib.util.spec_from_file_location("wan_official_modules.t5", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    finally:
        torch.cuda.current_device = real_current_device
    return mod, path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t5, path = load_official(a.official)
    cfg = json.load(open(a.config))
    model = t5.T5Encoder(**cfg).eval().requires_grad_(False)
    sd = load_safetensors(a.weights)
    model.load_state_dict(sd, strict=True)
    del sd
    if a.dtype == "bf16":
        model = model.to(torch.bfloat16)
    io = load_safetensors(a.inputs)
    ids = io["ids"].long()
    mask = io["mask"].long()
    after_load = peak_rss_mb()
    times = []
    with torch.no_grad():
        for r in range(a.reps):
            t0 = time.perf_counter()
            h = model(ids, mask)
            times.append((time.perf_counter() - t0) * 1e3)
            if r == 0 and a.out:
                save_safetensors(a.out, {"hidden_states": h.float()})
            del h
    print(
        json.dumps(
            {
                "forward_ms": times,
                "rss_after_load_mb": after_load,
                "peak_rss_mb": peak_rss_mb(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "dtype": a.dtype,
                "official": path,
            }
        )
    )


if __name__ == "__main__":
    main()
