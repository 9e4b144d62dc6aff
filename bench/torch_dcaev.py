"""PyTorch side of `npm run bench:dcaev`: DC-AE-V written from the project spec (docs/dc-videogen-spec.md §1-2), not
taken from the reference code. Module tree and parameter names equal the official state dict, so the benchmark's
safetensors weights load with load_state_dict(strict=True).

Run modes (one process per run, so ru_maxrss is that run's peak):

  torch_dcaev.py run --config CFG.json --weights W.safetensors --frames T [--height 128 --width 128]
                     [--threads 2] [--dump-latents PATH]
      streaming encode (chunk by chunk, feature cache) of a generated video, then streaming decode; prints one JSON
      line: encode_ms, decode_ms, peak RSS, checksums of the latents and the decoded frames.
  torch_dcaev.py fixture --dir FIXTURES/dc-ae-v [--name chunk_causal_small]
      checks this module against the reference fixtures (whole-clip and tiled), prints errors.
  torch_dcaev.py keys --shapes FIXTURES/dc-ae-v/official_state_dict_shapes.json
      builds every released config and compares the state-dict keys and shapes.

Input and checksums are defined identically in bench/dcaev.ts (`frameValue`, `checksum`).
"""
import argparse
import json
import math
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_common import load_safetensors, peak_rss_mb, rel as _rel, reset_peak_rss, vm_hwm_mb  # noqa: E402,F401

# ---------------------------------------------------------------------------------------------------------------
# config vocabulary (spec §1.5)

_BLOCK_RE = re.compile(r"^(ChunkCausal|Causal|)(ResBlock3d|ConvLayer3d|ConvPixelUnshuffle|ConvPixelShuffle)((?:@\d+)*)$")


def parse_block(s):
    m = _BLOCK_RE.match(s)
    if not m:
        raise ValueError("unknown block type " + s)
    mode = {"ChunkCausal": "chunk_causal", "Causal": "causal", "": "non_causal"}[m.group(1)]
    nums = [int(v) for v in m.group(3).split("@") if v]
    spec = {"kind": m.group(2), "mode": mode, "sf": 1, "tf": 1}
    i = 0
    if spec["kind"] in ("ConvPixelUnshuffle", "ConvPixelShuffle"):
        spec["sf"], spec["tf"] = nums[0], nums[1]
        i = 2
    spec["ks"], spec["kt"] = nums[i], nums[i + 1]
    spec["chunk"] = nums[i + 2] if mode == "chunk_causal" else None
    return spec


def per_stage(v, n):
    return [v] * n if isinstance(v, str) else list(v)


def released_config(name):
    """The released chunk-causal presets (spec §1.3): f32t4cC / f64t4cC."""
    m = re.match(r"^dc-ae-v-f(32|64)t4c(\d+)-1\.0$", name)
    n = 7 if m.group(1) == "32" else 8
    W = [128, 256, 512, 512] + [1024] * (n - 4)
    D = [0, 5, 10] + [4] * (n - 3)
    L, Lz = 40, 10
    blocks = [f"ChunkCausalResBlock3d@3@3@{L}"] * (n - 1) + [f"ChunkCausalResBlock3d@3@3@{Lz}"]
    sec = dict(width_list=W, depth_list=D, block_type=blocks)
    return dict(latent_channels=int(m.group(2)), in_channels=3,
                encoder=dict(sec, project_in_block_type=f"ChunkCausalConvPixelUnshuffle@2@1@3@3@{L}",
                             downsample_block_type=[f"ChunkCausalConvPixelUnshuffle@2@1@3@3@{L}"] * (n - 2)
                             + [f"ChunkCausalConvPixelUnshuffle@1@4@3@3@{L}"],
                             project_out_block_type=f"ChunkCausalConvLayer3d@3@3@{Lz}"),
                decoder=dict(sec, project_in_block_type=f"ChunkCausalConvLayer3d@3@3@{Lz}",
                             upsample_block_type=[f"ChunkCausalConvPixelShuffle@2@1@3@3@{L}"] * (n - 2)
                             + [f"ChunkCausalConvPixelShuffle@1@4@3@3@{Lz}"],
                             project_out_block_type=f"ChunkCausalConvPixelShuffle@2@1@3@3@{L}"))


_DEVICE = None  # "meta" while building the full-size presets for the key check (no allocation)

# ---------------------------------------------------------------------------------------------------------------
# primitives (spec §1.2)


def pixel_unshuffle_3d(x, sf, tf):
    """(B,C,T,H,W) -> (B, C*tf*sf*sf, T/tf, H/sf, W/sf); channel ((c*tf+dt)*sf+dh)*sf+dw."""
    B, C, T, H, W = x.shape
    x = x.view(B, C, T // tf, tf, H // sf, sf, W // sf, sf)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(B, C * tf * sf * sf, T // tf, H // sf, W // sf)


def pixel_shuffle_3d(x, sf, tf):
    """The exact inverse of pixel_unshuffle_3d."""
    B, C, T, H, W = x.shape
    c = C // (tf * sf * sf)
    x = x.view(B, c, tf, sf, sf, T, H, W)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(B, c, T * tf, H * sf, W * sf)


class RMSNorm3d(nn.Module):
    """Per-position RMS over channels, no mean subtraction; weight and bias [C]; eps 1e-5."""

    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c, device=_DEVICE))
        self.bias = nn.Parameter(torch.zeros(c, device=_DEVICE))
        self.eps = eps

    def forward(self, x):
        r = x.pow(2).mean(dim=1, keepdim=True).add_(self.eps).rsqrt_()
        shape = (1, -1, 1, 1, 1)
        return torch.addcmul(self.bias.view(shape), x * r, self.weight.view(shape))


class ConvLayer3d(nn.Module):
    """conv -> optional RMSNorm3d -> optional SiLU. Temporal padding by mode; chunk-causal is the released one:
    each chunk of L frames sees the last frame of the previous chunk of this layer's input on the left (the feature
    cache or zeros for a tile's first chunk) and zeros on the right."""

    def __init__(self, cin, cout, spec, bias, norm, act):
        super().__init__()
        kt, ks = spec["kt"], spec["ks"]
        self.conv = nn.Conv3d(cin, cout, (kt, ks, ks), padding=0, bias=bias, device=_DEVICE)
        if norm:
            self.norm = RMSNorm3d(cout)
        else:
            self.norm = None
        self.act = act
        self.mode = spec["mode"]
        self.chunk = spec["chunk"]
        self.pt = kt // 2
        self.ps = ks // 2
        self.cache_key = ""  # set by DCAEV after construction

    def _conv(self, x, pt_left, pt_right):
        """conv with zero temporal padding (pt_left, pt_right) and spatial padding ps."""
        if pt_left != pt_right:
            x = F.pad(x, (0, 0, 0, 0, pt_left, pt_right))
            pt_left = 0
        return F.conv3d(x, self.conv.weight, self.conv.bias, padding=(pt_left, self.ps, self.ps))

    def conv_forward(self, x, cache):
        T = x.shape[2]
        p = self.pt
        if self.mode == "non_causal":
            return self._conv(x, p, p)
        if self.mode == "causal":
            need = self.conv.weight.shape[2] - 1
            prev = cache.get(self.cache_key) if cache is not None else None
            inp = torch.cat([prev, x], 2) if prev is not None else F.pad(x, (0, 0, 0, 0, need, 0))
            if cache is not None and need > 0:
                cache[self.cache_key] = inp[:, :, -need:].clone()
            return self._conv(inp, 0, 0)
        L = self.chunk
        if T % L != 0:
            # inference fallback (spec §1.2): plain symmetric zero padding, cache neither read nor written
            return self._conv(x, p, p)
        if p == 0:
            return self._conv(x, 0, 0)
        n = T // L
        left = cache.get(self.cache_key) if cache is not None else None
        if left is None:
            left = x.new_zeros(x.shape[0], x.shape[1], p, x.shape[3], x.shape[4])
        right = x.new_zeros(x.shape[0], x.shape[1], p, x.shape[3], x.shape[4])
        outs = []
        for k in range(n):
            cur = x[:, :, k * L:(k + 1) * L]
            if k > 0:
                left = x[:, :, k * L - p:k * L]
            outs.append(self._conv(torch.cat([left, cur, right], 2), 0, 0))
        if cache is not None:
            cache[self.cache_key] = x[:, :, T - p:].clone()
        return outs[0] if n == 1 else torch.cat(outs, 2)

    def forward(self, x, cache=None):
        y = self.conv_forward(x, cache)
        if self.norm is not None:
            y = self.norm(y)
        if self.act:
            y = F.silu(y, inplace=True)
        return y


class ResBlock3d(nn.Module):
    def __init__(self, c, spec):
        super().__init__()
        self.conv1 = ConvLayer3d(c, c, spec, bias=True, norm=False, act=True)
        self.conv2 = ConvLayer3d(c, c, spec, bias=False, norm=True, act=False)

    def forward(self, x, cache=None):
        return self.conv2(self.conv1(x, cache), cache)


class ConvPixelUnshuffleDown(nn.Module):
    def __init__(self, cin, cout, spec):
        super().__init__()
        self.sf, self.tf = spec["sf"], spec["tf"]
        self.conv = ConvLayer3d(cin, cout // (self.sf * self.sf * self.tf), spec, bias=True, norm=False, act=False)

    def forward(self, x, cache=None):
        return pixel_unshuffle_3d(self.conv(x, cache), self.sf, self.tf)


class ConvPixelShuffleUp(nn.Module):
    def __init__(self, cin, cout, spec):
        super().__init__()
        self.sf, self.tf = spec["sf"], spec["tf"]
        self.conv = ConvLayer3d(cin, cout * self.sf * self.sf * self.tf, spec, bias=True, norm=False, act=False)

    def forward(self, x, cache=None):
        return pixel_shuffle_3d(self.conv(x, cache), self.sf, self.tf)


class AveragingShortcut(nn.Module):
    """Encoder shortcut: unshuffle, then average consecutive groups of g channels down to `cout`."""

    def __init__(self, cin, cout, sf, tf):
        super().__init__()
        self.cout, self.sf, self.tf = cout, sf, tf
        self.g = cin * sf * sf * tf // cout

    def forward(self, x):
        u = pixel_unshuffle_3d(x, self.sf, self.tf)
        if self.g == 1:
            return u
        B, C, T, H, W = u.shape
        return u.view(B, self.cout, self.g, T, H, W).mean(dim=2)


class DuplicatingShortcut(nn.Module):
    """Decoder shortcut: repeat each channel r times consecutively, then pixel-shuffle."""

    def __init__(self, cin, cout, sf, tf):
        super().__init__()
        self.sf, self.tf = sf, tf
        self.r = cout * sf * sf * tf // cin

    def forward(self, x):
        return pixel_shuffle_3d(x.repeat_interleave(self.r, dim=1) if self.r > 1 else x, self.sf, self.tf)


class ResidualBlock3d(nn.Module):
    def __init__(self, main, shortcut=None):
        super().__init__()
        self.main = main
        self.shortcut = shortcut  # parameter-free; None = identity

    def forward(self, x, cache=None):
        m = self.main(x, cache)
        s = x if self.shortcut is None else self.shortcut(x)
        return m.add_(s)


class OpSequential3d(nn.Module):
    def __init__(self, ops):
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x, cache=None):
        for op in self.op_list:
            if isinstance(op, (ConvLayer3d, ResidualBlock3d, ConvPixelShuffleUp, ConvPixelUnshuffleDown, ResBlock3d)):
                x = op(x, cache)
            else:
                x = op(x)
        return x


def _first_active(depths):
    return next(i for i, d in enumerate(depths) if d > 0)


def _last_width(widths, depths):
    w = widths[_first_active(depths)]
    for i, d in enumerate(depths):
        if d > 0:
            w = widths[i]
    return w


class Encoder(nn.Module):
    def __init__(self, cfg, in_ch, latent):
        super().__init__()
        W, D = cfg["width_list"], cfg["depth_list"]
        n = len(W)
        blocks = [parse_block(s) for s in per_stage(cfg["block_type"], n)]
        downs = [parse_block(s) for s in per_stage(cfg["downsample_block_type"], n - 1)]
        first = _first_active(D)
        self.project_in = ConvPixelUnshuffleDown(in_ch, W[first], parse_block(cfg["project_in_block_type"]))
        stages = []
        for s in range(n):
            ops = [ResidualBlock3d(ResBlock3d(W[s], blocks[s])) for _ in range(D[s])]
            if D[s] > 0 and s < n - 1:
                sp = downs[s]
                ops.append(ResidualBlock3d(ConvPixelUnshuffleDown(W[s], W[s + 1], sp),
                                           AveragingShortcut(W[s], W[s + 1], sp["sf"], sp["tf"])))
            stages.append(OpSequential3d(ops))
        self.stages = nn.ModuleList(stages)
        self.project_out = ConvLayer3d(_last_width(W, D), latent, parse_block(cfg["project_out_block_type"]),
                                       bias=True, norm=False, act=False)

    def forward(self, x, cache=None):
        x = self.project_in(x, cache)
        for st in self.stages:
            x = st(x, cache)
        return self.project_out(x, cache)


class Decoder(nn.Module):
    def __init__(self, cfg, out_ch, latent):
        super().__init__()
        W, D = cfg["width_list"], cfg["depth_list"]
        n = len(W)
        blocks = [parse_block(s) for s in per_stage(cfg["block_type"], n)]
        ups = [parse_block(s) for s in per_stage(cfg["upsample_block_type"], n - 1)]
        first = _first_active(D)
        self.project_in = ConvLayer3d(latent, _last_width(W, D), parse_block(cfg["project_in_block_type"]),
                                      bias=True, norm=False, act=False)
        stages = []
        for s in range(n):
            ops = []
            if D[s] > 0:
                if s < n - 1:
                    sp = ups[s]
                    ops.append(ResidualBlock3d(ConvPixelShuffleUp(W[s + 1], W[s], sp),
                                               DuplicatingShortcut(W[s + 1], W[s], sp["sf"], sp["tf"])))
                ops += [ResidualBlock3d(ResBlock3d(W[s], blocks[s])) for _ in range(D[s])]
            stages.append(OpSequential3d(ops))
        self.stages = nn.ModuleList(stages)
        self.project_out = OpSequential3d([RMSNorm3d(W[first]), nn.SiLU(),
                                           ConvPixelShuffleUp(W[first], out_ch,
                                                              parse_block(cfg["project_out_block_type"]))])

    def forward(self, z, cache=None):
        x = self.project_in(z, cache)
        for st in reversed(self.stages):
            x = st(x, cache)
        return self.project_out(x, cache)


class DCAEV(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg = cfg.get("config_overrides", cfg)
        in_ch = cfg.get("in_channels", 3)
        c = cfg["latent_channels"]
        self.encoder = Encoder(cfg["encoder"], in_ch, c)
        self.decoder = Decoder(cfg["decoder"], in_ch, c)
        for name, m in self.named_modules():
            if isinstance(m, ConvLayer3d):
                m.cache_key = name + "."
        pin = parse_block(cfg["encoder"]["project_in_block_type"])
        self.chunk = pin["chunk"]  # pixel frames per chunk
        t = pin["tf"]
        n = len(cfg["encoder"]["width_list"])
        downs = [parse_block(s) for s in per_stage(cfg["encoder"]["downsample_block_type"], n - 1)]
        for i in range(n - 1):
            if cfg["encoder"]["depth_list"][i] > 0:
                t *= downs[i]["tf"]
        self.temporal = t

    def encode(self, x, cache=None):
        return self.encoder(x, cache)

    def decode(self, z, cache=None):
        return self.decoder(z, cache)


# ---------------------------------------------------------------------------------------------------------------
# benchmark input and checksums (mirrored in bench/dcaev.ts)


def make_frames(t0, n, C, H, W):
    """Frames t0..t0+n-1 of a smooth moving pattern in [-0.9, 0.9], float64 math then float32: (1,C,n,H,W)."""
    t = np.arange(t0, t0 + n, dtype=np.float64)[None, :, None, None]
    c = np.arange(C, dtype=np.float64)[:, None, None, None]
    h = (np.arange(H, dtype=np.float64) / H)[None, None, :, None]
    w = (np.arange(W, dtype=np.float64) / W)[None, None, None, :]
    a = np.sin(2 * math.pi * (1.5 * h + 0.5 * w) + 0.15 * t + 2.1 * c)
    b = np.cos(2 * math.pi * (1.0 * w - 0.25 * h) - 0.07 * t + 0.7 * c)
    v = 0.9 * a * b
    return torch.from_numpy(v.astype(np.float32)[None])


def checksum(y):
    d = y.double()
    return float(d.sum()), float(d.abs().sum())


# ---------------------------------------------------------------------------------------------------------------
# modes


def cmd_run(a):
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    prof = torch.autograd.profiler.profile(record_shapes=True) if a.profile else None
    with torch.inference_mode():
        model = DCAEV(cfg)
        sd = load_safetensors(a.weights)
        model.load_state_dict(sd, strict=True)
        del sd
        model.eval()
        C = cfg.get("config_overrides", cfg).get("in_channels", 3)
        L = model.chunk
        Lz = L // model.temporal
        if a.frames % L:
            raise SystemExit(f"frames must be a multiple of the chunk ({L})")
        rss_loaded = peak_rss_mb()
        reset_ok = reset_peak_rss()  # from here on the peak is that of the streaming itself
        if prof is not None:
            prof.__enter__()
        # streaming encode: the input is generated chunk by chunk, the cache carries one frame per conv
        cache = {}
        lat = []
        enc_ms = 0.0
        chunk_ms = []
        for t0 in range(0, a.frames, L):
            x = make_frames(t0, L, C, a.height, a.width)
            s = time.perf_counter()
            z = model.encode(x, cache)
            chunk_ms.append((time.perf_counter() - s) * 1000)
            enc_ms += chunk_ms[-1]
            lat.append(z)
            del x
        del cache
        z_all = torch.cat(lat, 2)
        del lat
        if a.dump_latents:
            z_all.contiguous().numpy().astype("<f4").tofile(a.dump_latents)
        # streaming decode: decoded frames are checksummed and dropped
        cache = {}
        dec_ms = 0.0
        s_sum = s_abs = 0.0
        frames_out = 0
        for i in range(0, z_all.shape[2], Lz):
            s = time.perf_counter()
            y = model.decode(z_all[:, :, i:i + Lz], cache)
            chunk_ms.append((time.perf_counter() - s) * 1000)
            dec_ms += chunk_ms[-1]
            cs = checksum(y)
            s_sum += cs[0]
            s_abs += cs[1]
            frames_out += y.shape[2]
            del y
        zc = checksum(z_all)
    if prof is not None:
        prof.__exit__(None, None, None)
        total = enc_ms + dec_ms
        print(f"profile of torch, T={a.frames}: encode {enc_ms:.0f} ms + decode {dec_ms:.0f} ms", file=sys.stderr)
        rows = []
        for e in prof.key_averages(group_by_input_shape=True):
            ms = e.self_cpu_time_total / 1000
            if ms >= total * 0.002:
                shp = e.input_shapes[:2] if e.input_shapes else ""
                rows.append((ms, e.key, e.count, str(shp)))
        for ms, key, n, shp in sorted(rows, reverse=True):
            print(f"| {key} {shp} | {ms:.1f} | {100 * ms / total:.1f} | {n} |", file=sys.stderr)
    stream_peak = peak_rss_mb()
    print(json.dumps({
        "side": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(), "frames": a.frames,
        "encode_ms": enc_ms, "decode_ms": dec_ms, "peak_rss_mb": max(rss_loaded, stream_peak),
        "stream_peak_rss_mb": stream_peak if reset_ok else None, "rss_after_load_mb": rss_loaded, "latent_shape": list(z_all.shape), "latent_sum": zc[0], "latent_abs": zc[1],
        "frames_out": frames_out, "out_sum": s_sum, "out_abs": s_abs, "chunk_ms": [round(v) for v in chunk_ms],
    }), flush=True)


def cmd_fixture(a):
    torch.set_num_threads(a.threads)
    d = a.dir.rstrip("/")
    cfg = json.load(open(f"{d}/{a.name}.json"))
    io = load_safetensors(f"{d}/{a.name}.io.safetensors")
    model = DCAEV(cfg)
    model.load_state_dict(load_safetensors(f"{d}/{a.name}.weights.safetensors"), strict=True)
    res = {}
    with torch.inference_mode():
        z = model.encode(io["input"])
        res["latent"] = _rel(z, io["latent"])
        res["reconstruction"] = _rel(model.decode(io["latent"]), io["reconstruction"])
        if "long_input" in io:
            L = model.chunk
            Lz = L // model.temporal
            x = io["long_input"]
            cache = {}
            zz = torch.cat([model.encode(x[:, :, t:t + L], cache) for t in range(0, x.shape[2], L)], 2)
            res["long_latent_tiled"] = _rel(zz, io["long_latent"])
            res["long_latent_whole"] = _rel(model.encode(x), io["long_latent"])
            zl = io["long_latent"]
            cache = {}
            yy = torch.cat([model.decode(zl[:, :, i:i + Lz], cache) for i in range(0, zl.shape[2], Lz)], 2)
            res["long_reconstruction_tiled"] = _rel(yy, io["long_reconstruction"])
            res["long_reconstruction_whole"] = _rel(model.decode(zl), io["long_reconstruction"])
    print(json.dumps({"fixture": a.name, "rel_err": res}))
    return 0 if max(res.values()) < 1e-4 else 1


def cmd_keys(a):
    global _DEVICE
    shapes = json.load(open(a.shapes))
    bad = 0
    _DEVICE = "meta"
    for name, entry in shapes.items():
        m = DCAEV(released_config(name))
        got = {k: list(v.shape) for k, v in m.state_dict().items()}
        want = {k: list(v) for k, v in entry["state_dict_shapes"].items()}
        ne = sum(v.numel() for k, v in m.state_dict().items() if k.startswith("encoder."))
        nd = sum(v.numel() for k, v in m.state_dict().items() if k.startswith("decoder."))
        ok = got == want and ne == entry["num_params_encoder"] and nd == entry["num_params_decoder"]
        bad += not ok
        print(name, "ok" if ok else "MISMATCH", len(got), ne, nd)
    return bad


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--config", required=True)
    r.add_argument("--weights", required=True)
    r.add_argument("--frames", type=int, required=True)
    r.add_argument("--height", type=int, default=128)
    r.add_argument("--width", type=int, default=128)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--dump-latents", default=None)
    r.add_argument("--profile", action="store_true", help="per-op self time table (autograd profiler) on stderr")
    f = sub.add_parser("fixture")
    f.add_argument("--dir", required=True)
    f.add_argument("--name", default="chunk_causal_small")
    f.add_argument("--threads", type=int, default=2)
    k = sub.add_parser("keys")
    k.add_argument("--shapes", required=True)
    a = ap.parse_args()
    if a.cmd == "run":
        cmd_run(a)
        return 0
    if a.cmd == "fixture":
        return cmd_fixture(a)
    return cmd_keys(a)


if __name__ == "__main__":
    sys.exit(main())
