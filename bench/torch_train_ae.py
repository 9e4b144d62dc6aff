"""PyTorch side of `npm run bench:train-ae`: DC-AE-V training steps (encode -> decode -> L1 + 0.2 SSIM loss ->
backward -> clip_grad_norm_(1.0) -> AdamW) with the module of bench/torch_dcaev.py (written from the spec, same
state-dict keys; its chunk-causal conv without a cache convolves each chunk with the previous chunk's last frame on
the left and a zero frame on the right, which autograd differentiates as is), and the PyTorch twin of
src/train/losses.ts `ssimLoss`.

Modes:

  torch_train_ae.py train --config CFG.json --weights W.safetensors --data CLIP.f32 --shape 1,3,16,128,128
                          [--warmup 2] [--steps 8] [--threads 2] [--lr 1e-4] [--ssim-impl matmul|conv]
                          [--conv-impl chunks|batched] [--profile]
      runs warmup + steps training steps on the clip (raw little-endian float32, NCTHW) and prints one JSON line:
      per-step loss (before the update), gradient norm (before clipping) and wall time. --conv-impl batched runs each
      whole-clip chunk-causal conv as one conv over the chunks stacked on the batch axis (see _chunk_conv_batched);
      'chunks' (default) is torch_dcaev's per-chunk loop.
  torch_train_ae.py serve --config ... --weights ... --data ... --shape ... [--threads 2] [--lr 1e-4] [--ssim-impl]
      the same model and loop driven from stdin, one command per line, for interleaving with ours step by step:
      "step" runs one training step and prints {"ms", "loss", "l1", "ssim_loss", "grad_norm"}; "quit" (or EOF) exits.
      The first line printed is {"ready": true, ...}.
  torch_train_ae.py ssim --shape B,C,T,H,W --x X.f32 --y Y.f32 [--grad-out G.f32] [--dtype float32|float64]
                         [--ssim-impl matmul|conv]
      prints {"loss": ...}; with --grad-out writes d loss / d x then d loss / d y (float32) to G.f32
      (test/train_losses.test.ts compares ours against this).

SSIM loss (see src/train/losses.ts): a = (x+1)/2, b = (y+1)/2; an 11-tap Gaussian (sigma 1.5, float64 taps
normalised then float32) applied separably per channel and frame without padding; C1 = 0.01^2, C2 = 0.03^2;
loss = 1 - mean(((2 mx my + C1)(2 sxy + C2)) / ((mx^2 + my^2 + C1)(sxx + syy + C2))).
Two implementations of the separable blur, same arithmetic up to summation order: 'conv' (depthwise conv3d with
kernels (1,n,1) then (1,1,n), as ours) and 'matmul' (banded matrices: Gh @ t @ Gw^T). PyTorch 1.13's CPU depthwise
conv3d is slow, so the benchmark defaults to 'matmul', the faster of the two on this machine.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_dcaev  # noqa: E402  (the DC-AE-V module written from the spec)

# ---------------------------------------------------------------------------------------------------------------
# chunk-causal conv with the chunks stacked on the batch axis (an option of the torch side)


def _chunk_conv_batched(self, x, cache):
    """Whole-clip chunk-causal conv as ONE conv over the chunks stacked on the batch axis: chunk k with the last
    frame of chunk k-1 (zeros for k = 0) on the left and a zero frame on the right, exactly the inputs the per-chunk
    loop of torch_dcaev.ConvLayer3d.conv_forward builds, then the outputs put back in time order. Same arithmetic per
    output element; it changes what PyTorch 1.13 dispatches to: its CPU heuristic sends a batch-1 conv3d whose
    N*C*T*H is <= 20480 (every 32-ch 64x64 and 64-ch 32x32 chunk conv of this model, 10 frames with context) to the
    im2col+GEMM `slow_conv3d`, a batch of 2 or more to oneDNN."""
    T = x.shape[2]
    L, p = self.chunk, self.pt
    if self.mode != "chunk_causal" or cache is not None or T % L != 0 or p == 0 or T == L:
        return _ORIG_CONV_FORWARD(self, x, cache)
    B, C, _, H, W = x.shape
    n = T // L
    xc = x.view(B, C, n, L, H, W).transpose(1, 2)  # (B, n, C, L, H, W)
    left = F.pad(xc[:, :-1, :, L - p:], (0, 0, 0, 0, 0, 0, 0, 0, 1, 0))  # previous chunk's last p frames; zeros first
    inp = torch.cat([left, xc, xc.new_zeros(B, n, C, p, H, W)], 3).reshape(B * n, C, L + 2 * p, H, W)
    y = F.conv3d(inp, self.conv.weight, self.conv.bias, padding=(0, self.ps, self.ps))
    Co = y.shape[1]
    return y.view(B, n, Co, L, H, W).transpose(1, 2).reshape(B, Co, T, H, W)


_ORIG_CONV_FORWARD = torch_dcaev.ConvLayer3d.conv_forward


def use_batched_chunk_conv(flag):
    torch_dcaev.ConvLayer3d.conv_forward = _chunk_conv_batched if flag else _ORIG_CONV_FORWARD


C1 = 0.01 ** 2
C2 = 0.03 ** 2


def gaussian_window(n=11, sigma=1.5):
    k = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / sigma
    g = torch.exp(-(k * k) / 2)
    return (g / g.sum()).float()


_BLUR_CACHE = {}


def _blur_fn(shape, n, sigma, impl, dtype, device=None):
    B, C, T, H, W = shape
    key = (C, H, W, n, sigma, impl, dtype, str(device))
    if key not in _BLUR_CACHE:
        g = gaussian_window(n, sigma).to(dtype=dtype, device=device)
        if impl == "conv":
            kh = g.view(1, 1, 1, n, 1).repeat(C, 1, 1, 1, 1)
            kw = g.view(1, 1, 1, 1, n).repeat(C, 1, 1, 1, 1)

            def blur(t):
                return F.conv3d(F.conv3d(t, kh, groups=C), kw, groups=C)
        elif impl == "matmul":
            gh = torch.zeros(H - n + 1, H, dtype=dtype, device=device)
            for i in range(H - n + 1):
                gh[i, i:i + n] = g
            gwt = torch.zeros(W - n + 1, W, dtype=dtype, device=device)
            for i in range(W - n + 1):
                gwt[i, i:i + n] = g
            gwt = gwt.t().contiguous()

            def blur(t):
                return torch.matmul(gh, torch.matmul(t, gwt))
        else:
            raise ValueError("unknown ssim implementation " + impl)
        _BLUR_CACHE[key] = blur
    return _BLUR_CACHE[key]


def ssim_loss(x, y, n=11, sigma=1.5, impl="matmul"):
    if x.shape != y.shape or x.dim() != 5:
        raise ValueError(f"ssim_loss: expects two equal (B,C,T,H,W) shapes, got {tuple(x.shape)} {tuple(y.shape)}")
    if x.shape[3] < n or x.shape[4] < n:
        raise ValueError(f"ssim_loss: frames {x.shape[3]}x{x.shape[4]} smaller than the window {n}")
    blur = _blur_fn(tuple(x.shape), n, sigma, impl, x.dtype, x.device)
    a = x * 0.5 + 0.5
    b = y * 0.5 + 0.5
    mx = blur(a)
    my = blur(b)
    sxx_raw = blur(a * a)
    syy_raw = blur(b * b)
    sxy_raw = blur(a * b)
    mx2 = mx * mx
    my2 = my * my
    mxy = mx * my
    sxx = sxx_raw - mx2
    syy = syy_raw - my2
    sxy = sxy_raw - mxy
    num = (2 * mxy + C1) * (2 * sxy + C2)
    den = (mx2 + my2 + C1) * (sxx + syy + C2)
    return 1 - (num / den).mean()


def read_f32(path, shape):
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(shape).copy())


def parse_shape(s):
    return [int(v) for v in s.split(",")]


def cmd_ssim(a):
    torch.set_num_threads(a.threads)
    shape = parse_shape(a.shape)
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    x = read_f32(a.x, shape).to(dtype).requires_grad_(True)
    y = read_f32(a.y, shape).to(dtype).requires_grad_(True)
    loss = ssim_loss(x, y, impl=a.ssim_impl)
    loss.backward()
    if a.grad_out:
        np.concatenate([x.grad.numpy().ravel(), y.grad.numpy().ravel()]).astype("<f4").tofile(a.grad_out)
    print(json.dumps({"loss": float(loss), "dtype": a.dtype, "impl": a.ssim_impl}), flush=True)


class Trainer:
    """The model, data and optimizer of one benchmark run; step() is one timed training step."""

    def __init__(self, a):
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        cfg = json.load(open(a.config))
        self.model = torch_dcaev.DCAEV(cfg)
        sd = torch_dcaev.load_safetensors(a.weights)
        self.model.load_state_dict(sd, strict=True)
        del sd
        self.model.train()
        self.x = read_f32(a.data, parse_shape(a.shape))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # betas (0.9, 0.999), eps 1e-8, weight decay 0.01: the defaults, as ours
        self.opt = torch.optim.AdamW(self.params, lr=a.lr)
        self.impl = a.ssim_impl
        use_batched_chunk_conv(a.conv_impl == "batched")

    def step(self):
        t0 = time.perf_counter()
        c0 = time.process_time()
        x = self.x
        z = self.model.encode(x)
        y = self.model.decode(z)
        l1 = (y - x).abs().mean()
        ss = ssim_loss(y, x, impl=self.impl)
        loss = l1 + 0.2 * ss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (time.process_time() - c0) * 1000  # all threads of the process
        return {"ms": ms, "cpu_ms": cpu_ms, "loss": float(loss), "l1": float(l1), "ssim_loss": float(ss), "grad_norm": float(norm)}


def cmd_serve(a):
    tr = Trainer(a)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "ssim_impl": a.ssim_impl, "conv_impl": a.conv_impl, "params": sum(p.numel() for p in tr.params)}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "step":
            print(json.dumps(tr.step()), flush=True)
        elif cmd == "quit":
            break
        elif cmd:
            print(json.dumps({"error": "unknown command " + cmd}), flush=True)


def cmd_train(a):
    tr = Trainer(a)
    rows = []
    prof = None
    for i in range(a.warmup + a.steps):
        if i == a.warmup and a.profile:
            prof = torch.autograd.profiler.profile(record_shapes=True)
            prof.__enter__()
        rows.append(tr.step())
    if prof is not None:
        prof.__exit__(None, None, None)
        total = sum(r["ms"] for r in rows[a.warmup:])
        print(f"profile of torch: {a.steps} steps, {total:.0f} ms ({total / a.steps:.0f} ms per step)", file=sys.stderr)
        out = []
        for e in prof.key_averages(group_by_input_shape=True):
            ms = e.self_cpu_time_total / 1000
            if ms >= total * 0.003:
                shp = e.input_shapes[:2] if e.input_shapes else ""
                out.append((ms, e.key, e.count, str(shp)))
        for ms, key, n, shp in sorted(out, reverse=True):
            print(f"| {key} {shp} | {ms / a.steps:.1f} | {100 * ms / total:.1f} | {n // a.steps} |", file=sys.stderr)
    print(json.dumps({
        "side": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(), "ssim_impl": a.ssim_impl,
        "losses": [r["loss"] for r in rows], "l1": [r["l1"] for r in rows], "ssim_loss": [r["ssim_loss"] for r in rows],
        "grad_norms": [r["grad_norm"] for r in rows], "step_ms": [r["ms"] for r in rows],
        "params": sum(p.numel() for p in tr.params),
    }), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for mode in ("train", "serve"):
        t = sub.add_parser(mode)
        t.add_argument("--config", required=True)
        t.add_argument("--weights", required=True)
        t.add_argument("--data", required=True)
        t.add_argument("--shape", required=True)
        t.add_argument("--threads", type=int, default=2)
        t.add_argument("--lr", type=float, default=1e-4)
        t.add_argument("--ssim-impl", default="matmul", choices=["matmul", "conv"])
        t.add_argument("--conv-impl", default="chunks", choices=["chunks", "batched"])
        if mode == "train":
            t.add_argument("--warmup", type=int, default=2)
            t.add_argument("--steps", type=int, default=8)
            t.add_argument("--profile", action="store_true")
    s = sub.add_parser("ssim")
    s.add_argument("--shape", required=True)
    s.add_argument("--x", required=True)
    s.add_argument("--y", required=True)
    s.add_argument("--grad-out", default=None)
    s.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--ssim-impl", default="conv", choices=["matmul", "conv"])
    a = ap.parse_args()
    if a.cmd == "train":
        cmd_train(a)
    elif a.cmd == "serve":
        cmd_serve(a)
    else:
        cmd_ssim(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
