"""PyTorch side of `npm run bench:wan`: the Wan-2.1 DiT (t2v path) written from the project spec
(docs/dc-videogen-spec.md §3.2, §3.5), not taken from the Wan code. Module tree and parameter names are the original
Wan state-dict names, so the benchmark's safetensors weights load with load_state_dict(strict=True). UniPC (bh2,
order 2, predict-x0, lower_order_final, final sigma 0; spec §4.2-4.3) for the sampling runs.

Attention is plain matmul -> softmax -> matmul (torch 1.13 has no fused attention), processed in blocks of
`attn_chunk` queries (default 1024) so that the score matrix held at once is heads x chunk x Lk instead of
heads x Lq x Lk: at 17,600 tokens and 12 heads the unchunked scores alone would be 14.9 GB (twice that with the
softmax output). Chunking over queries is exact (each query row's softmax is independent).

Run modes:

  torch_wan.py worker --config CFG.json --weights W.safetensors --inputs I.safetensors [--threads 2]
      persistent process for the interleaved forward / forward+backward reps. Reads one command per line on stdin:
      `fwd`, `fwdbwd` (runs it once, prints {"ms": ...}), `dump PATH` (writes out and every parameter gradient of
      sum(out * g) to PATH as safetensors), `profile N` (N forward+backward runs under the autograd profiler; prints
      the per-op table as JSON), `quit`. The inputs file holds x, t, context, g.
  torch_wan.py sample --config CFG.json --weights W.safetensors --inputs S.safetensors --noise KEY --steps N
                      --shift S --guidance W [--threads 2] [--dump-prefix P] [--profile]
      one sampling run from noise S[KEY] with contexts S[ctx_cond] / S[ctx_uncond]; prints one JSON line with the
      per-forward times, the total, and the peak RSS (ru_maxrss). --dump-prefix writes P.v0.f32 (the first
      velocity) and P.final.f32 (the final latents) as raw little-endian float32.
  torch_wan.py fixture --dir FIXTURES/wan
      checks this module against the official-Wan fixtures (t2v ones), prints the relative errors.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_common import load_safetensors, peak_rss_mb, rel as _rel, save_safetensors  # noqa: E402,F401

# ---------------------------------------------------------------------------------------------------------------
# model (spec §3.2)


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight over the last axis (all D channels, before the head split)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def attention(q, k, v, chunk):
    """q (B, n, Lq, d), k/v (B, n, Lk, d) -> (B, n, Lq, d); softmax(q k^T / sqrt(d)) v over blocks of `chunk`
    queries (each block's scores are n x chunk x Lk)."""
    q = q * q.shape[-1] ** -0.5  # scale q (Lq x d) rather than the scores (Lq x Lk)
    kt = k.transpose(-1, -2)
    Lq = q.shape[2]
    if Lq <= chunk:
        return torch.matmul(torch.softmax(torch.matmul(q, kt), dim=-1), v)
    outs = []
    for s in range(0, Lq, chunk):
        outs.append(torch.matmul(torch.softmax(torch.matmul(q[:, :, s:s + chunk], kt), dim=-1), v))
    return torch.cat(outs, dim=2)


def rope_apply(x, freqs):
    """x (B, N, n, d); freqs (N, 1, d/2) complex64: rotates adjacent pairs (2i, 2i+1) by the token's angles."""
    B, N, n, d = x.shape
    xc = torch.view_as_complex(x.float().reshape(B, N, n, d // 2, 2))
    return torch.view_as_real(xc * freqs).flatten(3)


def rope_freqs(grid, head_dim):
    """(N, 1, d/2) complex64: per token [t_dim/2 angles of f, h_dim/2 of h, w_dim/2 of w], angle =
    pos * 10000^(-2i/axis_dim); computed in float64, cast once."""
    s = 2 * (head_dim // 6)
    dims = [head_dim - 2 * s, s, s]
    Fg, Hg, Wg = grid
    parts = []
    for axis, (dim, size) in enumerate(zip(dims, grid)):
        inv = 1.0 / torch.pow(10000.0, torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        ang = torch.outer(torch.arange(size, dtype=torch.float64), inv)  # (size, dim/2)
        shape = [1, 1, 1, dim // 2]
        shape[axis] = size
        parts.append(ang.view(shape).expand(Fg, Hg, Wg, dim // 2))
    ang = torch.cat(parts, dim=-1).reshape(Fg * Hg * Wg, 1, head_dim // 2)
    return torch.polar(torch.ones_like(ang), ang).to(torch.complex64)


def sinusoid(t, dim):
    """cos first; float64 then float32: (B,) -> (B, dim)."""
    half = dim // 2
    freq = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half)
    a = t.to(torch.float64)[:, None] * freq[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1).float()


class SelfAttention(nn.Module):
    def __init__(self, dim, heads, eps, chunk):
        super().__init__()
        self.n = heads
        self.chunk = chunk
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x, freqs):
        B, N, D = x.shape
        n, d = self.n, D // self.n
        q = rope_apply(self.norm_q(self.q(x)).view(B, N, n, d), freqs).transpose(1, 2)
        k = rope_apply(self.norm_k(self.k(x)).view(B, N, n, d), freqs).transpose(1, 2)
        v = self.v(x).view(B, N, n, d).transpose(1, 2)
        out = attention(q, k, v, self.chunk)
        return self.o(out.transpose(1, 2).reshape(B, N, D))


class CrossAttention(nn.Module):
    def __init__(self, dim, heads, eps, chunk):
        super().__init__()
        self.n = heads
        self.chunk = chunk
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x, ctx):
        B, N, D = x.shape
        L = ctx.shape[1]
        n, d = self.n, D // self.n
        q = self.norm_q(self.q(x)).view(B, N, n, d).transpose(1, 2)
        k = self.norm_k(self.k(ctx)).view(B, L, n, d).transpose(1, 2)
        v = self.v(ctx).view(B, L, n, d).transpose(1, 2)
        out = attention(q, k, v, self.chunk)
        return self.o(out.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    def __init__(self, c, chunk):
        super().__init__()
        D, eps = c["dim"], c["eps"]
        self.modulation = nn.Parameter(torch.zeros(1, 6, D))
        self.norm1 = nn.LayerNorm(D, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(D, c["num_heads"], eps, chunk)
        self.norm3 = nn.LayerNorm(D, eps, elementwise_affine=True)  # Wan's name for the cross-attention norm
        self.cross_attn = CrossAttention(D, c["num_heads"], eps, chunk)
        self.norm2 = nn.LayerNorm(D, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(D, c["ffn_dim"]), nn.GELU(approximate="tanh"), nn.Linear(c["ffn_dim"], D))

    def forward(self, x, e0, ctx, freqs):
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (self.modulation + e0).chunk(6, dim=1)
        x = x + self.self_attn(self.norm1(x) * (1 + scale_a) + shift_a, freqs) * gate_a
        x = x + self.cross_attn(self.norm3(x), ctx)
        return x + self.ffn(self.norm2(x) * (1 + scale_f) + shift_f) * gate_f


class Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        D = c["dim"]
        self.norm = nn.LayerNorm(D, c["eps"], elementwise_affine=False)
        self.head = nn.Linear(D, c["out_dim"] * math.prod(c["patch_size"]))
        self.modulation = nn.Parameter(torch.zeros(1, 2, D))

    def forward(self, x, temb):
        shift, scale = (self.modulation + temb[:, None]).chunk(2, dim=1)
        return self.head(self.norm(x) * (1 + scale) + shift)


class WanDiT(nn.Module):
    """t2v Wan-2.1 DiT. forward(x (B,Cin,F,H,W), t (B,), ctx (B, text_len, text_dim)) -> velocity (B,Cout,F,H,W)."""

    def __init__(self, c, attn_chunk=1024):
        super().__init__()
        if c.get("model_type", "t2v") != "t2v":
            raise ValueError("only the t2v path is implemented here")
        self.c = c
        D = c["dim"]
        self.patch_embedding = nn.Conv3d(c["in_dim"], D, c["patch_size"], stride=c["patch_size"])
        self.text_embedding = nn.Sequential(nn.Linear(c["text_dim"], D), nn.GELU(approximate="tanh"), nn.Linear(D, D))
        self.time_embedding = nn.Sequential(nn.Linear(c["freq_dim"], D), nn.SiLU(), nn.Linear(D, D))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
        self.blocks = nn.ModuleList([Block(c, attn_chunk) for _ in range(c["num_layers"])])
        self.head = Head(c)
        self._freqs = {}

    def freqs(self, grid):
        if grid not in self._freqs:
            self._freqs[grid] = rope_freqs(grid, self.c["dim"] // self.c["num_heads"])
        return self._freqs[grid]

    def forward(self, x, t, ctx):
        B, C, Fr, H, W = x.shape
        pt, ph, pw = self.c["patch_size"]
        D = self.c["dim"]
        grid = (Fr // pt, H // ph, W // pw)
        # conv3d with kernel = stride = patch, as one GEMM over the flattened patches (c, pt, ph, pw order)
        p = x.reshape(B, C, grid[0], pt, grid[1], ph, grid[2], pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        tokens = F.linear(p.reshape(B, -1, C * pt * ph * pw), self.patch_embedding.weight.reshape(D, -1),
                          self.patch_embedding.bias)
        temb = self.time_embedding(sinusoid(t, self.c["freq_dim"]))
        e0 = self.time_projection(temb).view(B, 6, D)
        ctx = self.text_embedding(ctx)
        freqs = self.freqs(grid)
        h = tokens
        for blk in self.blocks:
            h = blk(h, e0, ctx, freqs)
        y = self.head(h, temb)
        Co = self.c["out_dim"]
        y = y.view(B, grid[0], grid[1], grid[2], pt, ph, pw, Co).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return y.reshape(B, Co, Fr, H, W)


# ---------------------------------------------------------------------------------------------------------------
# UniPC on the diffusers flow grid (spec §4.2-4.3)


def flow_schedule(steps, shift):
    base = np.linspace(1.0, 1.0 / 1000, steps + 1)[:-1]
    sig = shift * base / (1 + (shift - 1) * base)
    if abs(sig[0] - 1.0) < 1e-6:
        sig[0] -= 1e-6
    ts = np.trunc(sig * 1000).astype(np.int64)
    sig = np.concatenate([sig, [0.0]]).astype(np.float32).astype(np.float64)
    return sig, ts


class UniPC:
    def __init__(self, sigmas):
        self.s = sigmas
        self.N = len(sigmas) - 1
        with np.errstate(divide="ignore"):
            self.lam = np.array([np.inf if s == 0 else math.log(1 - s) - math.log(s) for s in sigmas])
        self.ms = []
        self.last = None
        self.last_order = 0
        self.lower = 0
        self.i = 0

    def step(self, v, x):
        i, s, lam = self.i, self.s, self.lam
        m = x - float(s[i]) * v
        xc = x
        if i > 0 and self.last is not None:
            mp = self.ms[-1]
            h = lam[i] - lam[i - 1]
            phi = math.expm1(-h)
            c1, c2 = s[i] / s[i - 1], (1 - s[i]) * phi
            if self.last_order == 1:
                xc = c1 * self.last - c2 * mp - c2 * 0.5 * (m - mp)
            else:
                mpp = self.ms[-2]
                r = (lam[i - 2] - lam[i - 1]) / h
                g1 = phi / -h - 1
                b0 = g1 / phi
                b1 = 2 * (g1 / -h - 0.5) / phi
                rho1 = (b1 - r * b0) / (1 - r)
                rho0 = b0 - rho1
                xc = c1 * self.last - c2 * mp - c2 * (rho0 * (mpp - mp) / r + rho1 * (m - mp))
        self.ms = (self.ms + [m])[-2:]
        order = min(2, self.N - i, self.lower + 1)
        self.last = xc
        self.last_order = order
        if s[i + 1] == 0:
            out = m
        else:
            h = lam[i + 1] - lam[i]
            phi = math.expm1(-h)
            c1, c2 = s[i + 1] / s[i], (1 - s[i + 1]) * phi
            out = c1 * xc - c2 * m
            if order == 2:
                r = (lam[i - 1] - lam[i]) / h
                out = out - c2 * 0.5 * (self.ms[0] - m) / r
        self.lower = min(self.lower + 1, 2)
        self.i += 1
        return out


# ---------------------------------------------------------------------------------------------------------------
# model loading

def load_model(a):
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    cfg = cfg.get("config", cfg)
    model = WanDiT(cfg, a.attn_chunk)
    sd = load_safetensors(a.weights)
    model.load_state_dict(sd, strict=True)
    del sd
    return model, cfg


def profile_table(prof, total_ms):
    rows = []
    for e in prof.key_averages():
        ms = e.self_cpu_time_total / 1000
        if ms >= total_ms * 0.002:
            rows.append({"op": e.key, "ms": round(ms, 2), "calls": e.count})
    rows.sort(key=lambda r: -r["ms"])
    return rows


# ---------------------------------------------------------------------------------------------------------------
# modes


def cmd_worker(a):
    model, cfg = load_model(a)
    io = load_safetensors(a.inputs)
    x, t, ctx, g = io["x"], io["t"], io["context"], io["g"]
    params = list(model.parameters())

    def fwd():
        with torch.no_grad():
            return model(x, t, ctx)

    def fwdbwd():
        for p in params:
            p.grad = None
        out = model(x, t, ctx)
        out.backward(g)
        return out

    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "rss_mb": peak_rss_mb()}), flush=True)
    warmed = set()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] == "dump":
            out = fwdbwd()
            d = {"out": out}
            for k, p in model.named_parameters():
                d["grad." + k] = p.grad
            save_safetensors(cmd[1], d)
            print(json.dumps({"ok": True}), flush=True)
            continue
        if cmd[0] == "profile":
            n = int(cmd[1])
            fwdbwd()
            s = time.perf_counter()
            with torch.autograd.profiler.profile() as prof:
                for _ in range(n):
                    fwdbwd()
            total = (time.perf_counter() - s) * 1000
            print(json.dumps({"total_ms": total, "table": profile_table(prof, total)}), flush=True)
            continue
        fn = fwd if cmd[0] == "fwd" else fwdbwd
        if cmd[0] not in warmed:
            fn()
            warmed.add(cmd[0])
        s = time.perf_counter()
        fn()
        print(json.dumps({"ms": (time.perf_counter() - s) * 1000}), flush=True)


def cmd_sample(a):
    model, cfg = load_model(a)
    io = load_safetensors(a.inputs)
    x = io[a.noise].clone()
    cond, uncond = io["ctx_cond"], io["ctx_uncond"]
    del io
    rss_loaded = peak_rss_mb()
    sig, ts = flow_schedule(a.steps, a.shift)
    solver = UniPC(sig)
    fwd_ms = []
    prof = torch.autograd.profiler.profile() if a.profile else None
    if prof is not None:
        prof.__enter__()
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(a.steps):
            tt = torch.tensor([float(ts[i])])
            s = time.perf_counter()
            vc = model(x, tt, cond)
            fwd_ms.append((time.perf_counter() - s) * 1000)
            if i == 0 and a.dump_prefix:
                vc.contiguous().numpy().astype("<f4").tofile(a.dump_prefix + ".v0.f32")
            if a.guidance != 1:
                s = time.perf_counter()
                vu = model(x, tt, uncond)
                fwd_ms.append((time.perf_counter() - s) * 1000)
                v = vu + a.guidance * (vc - vu)
            else:
                v = vc
            x = solver.step(v, x)
    total = (time.perf_counter() - t0) * 1000
    table = None
    if prof is not None:
        prof.__exit__(None, None, None)
        table = profile_table(prof, total)
    if a.dump_prefix:
        x.contiguous().numpy().astype("<f4").tofile(a.dump_prefix + ".final.f32")
    d = x.double()
    print(json.dumps({
        "side": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(), "tokens": x[0, 0].numel(),
        "forward_ms": fwd_ms, "total_ms": total, "peak_rss_mb": peak_rss_mb(), "rss_after_load_mb": rss_loaded,
        "final_sum": float(d.sum()), "final_abs": float(d.abs().sum()), "timesteps": [int(v) for v in ts],
        "profile": table,
    }), flush=True)


def cmd_fixture(a):
    torch.set_num_threads(a.threads)
    d = a.dir.rstrip("/")
    allc = json.load(open(f"{d}/wan_fixtures.json"))
    res = {}
    for name in ("wan_t2v_base_tiny", "wan_t2v_dc_tiny"):
        cfg = dict(allc[name]["config"])
        cfg.setdefault("eps", 1e-6)
        model = WanDiT(cfg)
        model.load_state_dict(load_safetensors(f"{d}/{name}.weights.safetensors"), strict=True)
        io = load_safetensors(f"{d}/{name}.io.safetensors")
        x = io["x"]
        B = x.shape[0]
        ctx = torch.zeros(B, cfg["text_len"], cfg["text_dim"])
        for b in range(B):
            c = io[f"context{b}"]
            ctx[b, :c.shape[0]] = c
        if "grad_out" in io:
            out = model(x, io["t"], ctx)
            out.backward(io["grad_out"])
            res[name] = _rel(out.detach(), io["out"])
            res[name + ".grads"] = max(_rel(p.grad, io["grad." + k]) for k, p in model.named_parameters())
        else:
            with torch.no_grad():
                res[name] = _rel(model(x, io["t"], ctx), io["out"])
    print(json.dumps({"rel_err": res}))
    return 0 if max(res.values()) < 1e-4 else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("worker", "sample"):
        p = sub.add_parser(name)
        p.add_argument("--config", required=True)
        p.add_argument("--weights", required=True)
        p.add_argument("--inputs", required=True)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--attn-chunk", type=int, default=1024)
        if name == "sample":
            p.add_argument("--noise", required=True)
            p.add_argument("--steps", type=int, default=4)
            p.add_argument("--shift", type=float, default=5.0)
            p.add_argument("--guidance", type=float, default=5.0)
            p.add_argument("--dump-prefix", default=None)
            p.add_argument("--profile", action="store_true")
    f = sub.add_parser("fixture")
    f.add_argument("--dir", required=True)
    f.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.cmd == "worker":
        cmd_worker(a)
        return 0
    if a.cmd == "sample":
        cmd_sample(a)
        return 0
    return cmd_fixture(a)


if __name__ == "__main__":
    sys.exit(main())
