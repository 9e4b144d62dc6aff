"""Diagnostics behind README "The default model" (run with /usr/bin/python3, which has torch; CPU is enough).

  diagnose_ae.py colour --frames .gpu/frames --weights W.safetensors [--first 64]
      per clip of a frames pack (scripts/train_ae_torch.py pack): PSNR of the model's reconstruction of the first
      --first frames, PSNR of their 32x32 block means (what one latent position covers: a model that keeps colour
      gets these right), and the spread of the reconstruction's chroma (R-G, B-G) over the original's.
  diagnose_ae.py pca --frames .gpu/frames [--block 32] [--tf 4] [--k 32] [--first N] [--split held-out|train]
      a linear reference at the same budget: the k leading principal components of (tf x block x block x RGB)
      blocks of the training clips (their first N frames with --first), applied to the held-out clips (or to the
      training clips themselves); PSNR of each clip over all its pixels, and the mean over clips.

Uses the PyTorch twin of the model (bench/torch_dcaev.py) and the pack's held-out split.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch_train_ae  # noqa: E402
from train_ae_torch import clip_tensor, load_model, load_pack  # noqa: E402


def psnr(a, b):
    """PSNR of tensors in [-1, 1] over all elements."""
    return 10 * math.log10(4 / ((a - b) ** 2).mean().item())


def cmd_colour(a):
    torch_train_ae.use_batched_chunk_conv(True)
    m, _ = load_model(a.weights)
    clips, held = load_pack(a.frames)
    print("| clip | held out | PSNR | PSNR of 32x32 block means | chroma spread / original's |")
    print("|---|---|---:|---:|---:|")
    pool = lambda t: F.avg_pool3d(t, (1, 32, 32))  # noqa: E731
    spread = lambda t: torch.stack([t[:, 0] - t[:, 1], t[:, 2] - t[:, 1]]).std().item()  # noqa: E731
    with torch.no_grad():
        for n, f in clips:
            T = min(a.first, f.shape[0]) // m.chunk * m.chunk
            x = clip_tensor(f, T)
            y = m.decode(m.encode(x)).clamp(-1, 1)
            s = spread(x)
            ratio = f"{spread(y) / s:.2f}" if s > 1e-3 else "- (grey clip)"
            print(f"| {n} | {'yes' if n in held else ''} | {psnr(y, x):.2f} | {psnr(pool(y), pool(x)):.2f} | {ratio} |")


def blocks(f, s, t):
    T = f.shape[0] // t * t
    x = torch.from_numpy(f[:T]).float() / 127.5 - 1  # T, H, W, 3
    H, W = x.shape[1] // s * s, x.shape[2] // s * s
    x = x[:, :H, :W]
    return x.reshape(T // t, t, H // s, s, W // s, s, 3).permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, t * s * s * 3)


def cmd_pca(a):
    torch.manual_seed(0)
    clips, held = load_pack(a.frames)
    cut = (lambda f: f[: a.first]) if a.first else (lambda f: f)  # noqa: E731
    train = torch.cat([blocks(cut(f), a.block, a.tf) for n, f in clips if n not in held])
    mu = train.mean(0)
    _, _, V = torch.svd_lowrank(train - mu, q=a.k + 16, niter=4)
    P = V[:, : a.k]
    print(f"PCA of {a.tf}x{a.block}x{a.block}x3 blocks ({train.shape[1]} values) -> {a.k} coefficients, fitted on {train.shape[0]} training blocks")
    ps = []
    for n, f in clips:
        if (n in held) == (a.split == "held-out"):
            b = blocks(cut(f), a.block, a.tf)
            ps.append(psnr((b - mu) @ P @ P.T + mu, b))
            print(f"{n}: PSNR {ps[-1]:.2f} dB")
    print(f"mean over {len(ps)} {a.split} clips: {sum(ps) / len(ps):.2f} dB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("colour")
    c.add_argument("--frames", required=True)
    c.add_argument("--weights", required=True)
    c.add_argument("--first", type=int, default=64)
    p = sub.add_parser("pca")
    p.add_argument("--frames", required=True)
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--tf", type=int, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--first", type=int, default=0, help="only the first N frames of each clip (0: all)")
    p.add_argument("--split", choices=["held-out", "train"], default="held-out")
    a = ap.parse_args()
    torch.set_num_threads(2)
    cmd_colour(a) if a.cmd == "colour" else cmd_pca(a)


if __name__ == "__main__":
    main()
