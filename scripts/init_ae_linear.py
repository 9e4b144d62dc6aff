"""Linear initialisation of a DC-AE-V for `dcvg train-ae --init` (run with /usr/bin/python3, which has torch; a CPU
is enough: about 2 minutes on 2 cores for the default model).

  init_ae_linear.py --frames .gpu/frames --config assets/default-ae/config.json --out init.safetensors
                    [--frames-per-clip 16] [--grow 4] [--const 5] [--offset 12] [--threads 2]

Sets the weights of the chunk-causal DC-AE-V so that, before any training, it is a good *linear* autoencoder fitted
to the training clips of a frames pack (scripts/train_ae_torch.py pack; the pack's held-out clips are not used for
fitting), instead of starting from random weights. Why: trained from random weights on this machine's budget the
default model stayed below a 32-component PCA of 4x32x32 blocks even on its training clips (README, "The default
model"); starting as a hierarchical PCA puts it there before the first step.

How (every conv uses only its centre tap, so each layer acts on one cell of its grid; residual blocks start as the
identity: the closing RMSNorm scale of each is zero):
  encoder   project_in passes the pixels through (RGB of each 2x2 cell). Each down block then keeps the leading
            principal components of its input cell (covariance over the training clips, through the model as built
            so far), C_out / (sf^2 tf) of them, and the unshuffle groups the sub-cells. The block's parameter-free
            averaging shortcut adds its input to that result; to keep that from mixing discarded detail into the kept
            components, each block's output is scaled to --grow times its input's RMS (features grow 4x per block;
            with growth 1 the held-out PSNR of the initialisation is 1.4 dB lower). project_out keeps the leading
            principal components of the last features (the latent).
  decoder   fitted top-down by least squares: each up block predicts, from the decoder's own output of the block
            above, the encoder's features at its resolution (the duplicating shortcut's contribution is subtracted
            from the fitted conv, so the block as a whole computes the fit). The last up block predicts the pixels
            and a constant --const on the remaining channels; that constant nearly fixes the RMS of the final RMSNorm
            (with pixel channels v and k constant ones its scale is off by about sum(v^2) / (2 k const^2): under 1%
            for pixels in [-1, 1] with the defaults), whose scale and bias (--offset) then keep the pixel channels in
            SiLU's linear range (off by under 1e-4), so the head passes them through to the output conv.

Prints the PSNR of the initialised model on the held-out and training clips (first 64 frames, PSNR over each clip)
and writes the weights with the config embedded (safetensors, our key names), which `dcvg train-ae --init` and every
`dcvg --weights` read.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import torch_dcaev as D  # noqa: E402
from train_ae_torch import clip_tensor, load_pack, save_safetensors  # noqa: E402


def centre(conv, mode):
    """(t, h, w) of the tap that reads the output position's own frame and pixel."""
    kt, kh, kw = conv.weight.shape[2:]
    return (kt - 1 if mode == "causal" else kt // 2, kh // 2, kw // 2)


def set_centre(layer, W, b):
    """Sets a ConvLayer3d to the per-cell affine map W x + b (zero elsewhere in the kernel)."""
    conv = layer.conv
    with torch.no_grad():
        conv.weight.zero_()
        t, h, w = centre(conv, layer.mode)
        conv.weight[:, :, t, h, w] = W.float()
        if conv.bias is not None:
            conv.bias.copy_(b.float())
        elif b.abs().max() > 0:
            raise SystemExit("init: a conv without bias would need one")


def cells(x):
    """(1, C, T, H, W) -> (T*H*W, C) float64."""
    return x[0].reshape(x.shape[1], -1).T.double()


def pca(chunks):
    """Mean, eigenvalues (descending) and eigenvectors (columns) of the covariance of rows of the given chunks."""
    S = mu = 0
    n = 0
    for c in chunks:
        S = S + c.T @ c
        mu = mu + c.sum(0)
        n += c.shape[0]
    mu = mu / n
    ev, V = torch.linalg.eigh(S / n - torch.outer(mu, mu))
    return mu, ev.flip(0).clamp_min(0), V.flip(1)


def lstsq(pairs):
    """Affine least squares Y ~ W X + b over (X, Y) row chunks (normal equations, float64, tiny ridge)."""
    A = B = 0
    for X, Y in pairs:
        X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
        A = A + X.T @ X
        B = B + X.T @ Y
    A = A + 1e-6 * A.diagonal().mean() * torch.eye(A.shape[0], dtype=A.dtype)
    Wb = torch.linalg.solve(A, B)
    return Wb[:-1].T, Wb[-1]


def psnr(a, b):
    return 10 * math.log10(4 / ((a - b) ** 2).mean().item())


def check_config(m):
    enc, dec = m.encoder, m.decoder
    pin = enc.project_in.conv
    cin = pin.conv.weight.shape[1]
    if pin.conv.weight.shape[0] < cin:
        raise SystemExit(f"init: encoder project_in has {pin.conv.weight.shape[0]} channels before the unshuffle, "
                         f"fewer than the {cin} input channels it must pass through")
    npix = cin * enc.project_in.sf ** 2 * enc.project_in.tf
    head = dec.project_out.op_list[2]
    if (head.sf, head.tf) != (enc.project_in.sf, enc.project_in.tf):
        raise SystemExit("init: decoder project_out must mirror encoder project_in (same spatial/temporal factors)")
    width = head.conv.conv.weight.shape[1]
    if width <= npix:
        raise SystemExit(f"init: the decoder's last stage has {width} channels; the head needs more than the {npix} "
                         "pixel channels (one constant channel at least)")
    return npix


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", required=True, help="frames pack (scripts/train_ae_torch.py pack)")
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames-per-clip", type=int, default=16, help="first N frames of each training clip are fitted")
    ap.add_argument("--grow", type=float, default=4.0)
    ap.add_argument("--const", type=float, default=5.0)
    ap.add_argument("--offset", type=float, default=12.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not a.out.endswith(".safetensors"):
        raise SystemExit(f"--out must end in .safetensors, got {a.out}")
    if a.grow <= 0 or a.const <= 0 or a.offset <= 0 or a.frames_per_clip < 1:
        raise SystemExit("--grow, --const, --offset and --frames-per-clip must be positive")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.load(open(a.config))
    m = D.DCAEV(cfg)
    m.eval()
    npix = check_config(m)
    enc, dec = m.encoder, m.decoder
    if a.frames_per_clip % m.chunk:
        raise SystemExit(f"--frames-per-clip must be a multiple of the chunk ({m.chunk})")
    for mod in m.modules():
        if isinstance(mod, D.ResBlock3d):
            with torch.no_grad():
                mod.conv2.norm.weight.zero_()
                mod.conv2.norm.bias.zero_()
    clips, held = load_pack(a.frames)

    def clip(f, n):
        return clip_tensor(f, min(n, f.shape[0] // m.chunk * m.chunk))

    train = [clip(f, a.frames_per_clip) for n, f in clips if n not in held]
    if not train:
        raise SystemExit(f"{a.frames}: no training clips")
    t0 = time.time()

    # encoder: project_in passes the pixels through
    W = torch.zeros(enc.project_in.conv.conv.weight.shape[0], npix // enc.project_in.sf ** 2 // enc.project_in.tf)
    W[: W.shape[1]] = torch.eye(W.shape[1])
    set_centre(enc.project_in.conv, W, torch.zeros(W.shape[0]))

    @torch.no_grad()
    def features(x, upto):
        h = enc.project_in(x)
        for s in range(upto):
            h = enc.stages[s](h)
        return h

    for s, st in enumerate(enc.stages):
        for op in st.op_list:
            if isinstance(op.main, D.ConvPixelUnshuffleDown):
                layer = op.main.conv
                k = layer.conv.weight.shape[0]
                mu, ev, V = pca(cells(features(x, s)) for x in train)
                rms_in = math.sqrt(ev.sum().item() / ev.numel())
                K = V[:, :k].T * (a.grow * rms_in / math.sqrt(ev[:k].mean().item() + 1e-30))
                set_centre(layer, K, -(K @ mu))
                print(f"encoder stage {s}: {ev.numel()} -> {k} per cell, variance kept {ev[:k].sum() / ev.sum():.4f}",
                      flush=True)
    mu, ev, V = pca(cells(features(x, len(enc.stages))) for x in train)
    k = enc.project_out.conv.weight.shape[0]
    P = V[:, :k].T
    set_centre(enc.project_out, P, -(P @ mu))
    print(f"encoder project_out: {ev.numel()} -> {k}, variance kept {ev[:k].sum() / ev.sum():.4f}", flush=True)

    # decoder: top-down least squares onto the encoder's features
    with torch.no_grad():
        data = []
        for x in train:
            fs = [enc.project_in(x)]
            for st in enc.stages:
                fs.append(st(fs[-1]))
            data.append((fs, enc.project_out(fs[-1])))
    Wm, b = lstsq((cells(z), cells(fs[-1])) for fs, z in data)
    set_centre(dec.project_in, Wm, b)
    n = len(dec.stages)
    first_up = min(s for s in range(n) if any(isinstance(op.main, D.ConvPixelShuffleUp) for op in dec.stages[s].op_list
                                              if isinstance(op, D.ResidualBlock3d)))
    for s in reversed(range(n)):
        ups = [op for op in dec.stages[s].op_list if isinstance(op, D.ResidualBlock3d) and isinstance(op.main, D.ConvPixelShuffleUp)]
        if not ups:
            continue
        up = ups[0]
        pairs = []
        with torch.no_grad():
            for fs, z in data:
                h = dec.project_in(z)
                for s2 in reversed(range(s + 1, n)):
                    h = dec.stages[s2](h)
                tgt = fs[s].clone()
                if s == first_up:
                    tgt[:, npix:] = a.const
                pairs.append((cells(h), cells(D.pixel_unshuffle_3d(tgt, up.main.sf, up.main.tf))))
        Wm, b = lstsq(pairs)
        dup = torch.zeros_like(Wm)
        for i in range(Wm.shape[0]):
            dup[i, i // up.shortcut.r] = 1
        set_centre(up.main.conv, Wm - dup, b)
        print(f"decoder stage {s}: {Wm.shape[1]} -> {Wm.shape[0]} least squares", flush=True)
    norm, head = dec.project_out.op_list[0], dec.project_out.op_list[2].conv
    width = norm.weight.shape[0]
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.zero_()
        norm.weight[:npix] = math.sqrt((width - npix) / width) * a.const
        norm.bias[:npix] = a.offset
    W = torch.zeros(head.conv.weight.shape[0], width)
    W[:, :npix] = torch.eye(npix)
    set_centre(head, W, -a.offset * torch.ones(npix))
    print(f"fitted in {time.time() - t0:.0f}s", flush=True)

    with torch.no_grad():
        for name, keep in (("held-out", True), ("training", False)):
            ps = [psnr(m.decode(m.encode(x)).clamp(-1, 1), x) for x in (clip(f, 64) for n, f in clips if (n in held) == keep)]
            print(f"{name} clips, first 64 frames: PSNR {sum(ps) / len(ps):.2f} dB (mean over clips: "
                  f"{', '.join(f'{p:.2f}' for p in ps)})", flush=True)
    save_safetensors(a.out, m.state_dict(), {"config": json.dumps(cfg), "init": "scripts/init_ae_linear.py " + " ".join(sys.argv[1:])})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
