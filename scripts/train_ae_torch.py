"""PyTorch twin of `dcvg train-ae` for a CUDA machine: the same DC-AE-V (bench/torch_dcaev.py, written from the spec,
same state-dict keys as ours), the same loss (L1 + w * (1 - SSIM), bench/torch_train_ae.py's SSIM twin of
src/train/losses.ts), the same data recipe (random windows of whole chunks, crops, horizontal flips, still frames as
static clips, the same held-out split), AdamW with warmup + cosine, global-norm clipping and EMA weights.

What differs from `dcvg train-ae`: the schedule runs on a time budget (--seconds) instead of a step count, since the
point of this script is to use a borrowed GPU for a fixed number of minutes; batches are drawn with Python's RNG (no
bit-exact resume); weights are written as safetensors with our key names and the model config embedded, so
`dcvg --weights model.safetensors` and `dcvg train-ae --init` read them directly.

Used to train the shipped default model (README, "The default model"). Modes:

  train_ae_torch.py pack --data ../shared/data/clips128 --out .gpu/frames [--holdout 3]
      decodes every video of the folder with ffmpeg (raw RGB24, as src/io/video.ts) into NAME.z (frame-delta coded,
      zlib: the 21 shared clips take 38 MB instead of 165) plus index.json with the held-out split of
      src/train/data.ts (k clips spread evenly over the sorted list).
  train_ae_torch.py train --frames .gpu/frames --config assets/default-ae/config.json --out DIR --seconds 300
                          [--init W.safetensors | --init scratch] [--batch 16] [--frames-per-clip 16] [--crop 128]
                          [--lr 3e-4] [--warmup 200] [--min-lr-ratio 0.1] [--weight-decay 0.01] [--clip 1.0]
                          [--ema 0.999] [--ssim-weight 0.2] [--still-prob 0.1] [--color-aug 0] [--seed 0] [--eval-every 60]
                          [--split] [--log FILE] [--tag NAME] [--device cuda]
      trains for --seconds of wall time; every --eval-every seconds and at the end evaluates the EMA weights on the
      whole held-out clips (PSNR of uint8 frames, mean over frames) and writes them to DIR/TAG.safetensors (with
      --split: DIR/TAG-encoder.safetensors and DIR/TAG-decoder.safetensors, each under 16 MB). Log lines (JSON) go
      to stdout and, with --log, are appended to FILE.
  train_ae_torch.py merge --parts A.safetensors B.safetensors --out model.safetensors
      joins split weight files into one (metadata of the first part kept).
"""
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import torch_dcaev  # noqa: E402
import torch_train_ae  # noqa: E402
from torch_common import write_safetensors_as_stored  # noqa: E402

VIDEO_EXT = {".mp4", ".webm", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".ogv", ".gif", ".y4m"}


# ---------------------------------------------------------------------------------------------------------------
# frames pack


def held_out_indices(n, k):
    """src/train/data.ts heldOutIndices: k indices spread evenly over n sorted videos."""
    if k <= 0:
        return []
    if k >= n:
        raise SystemExit(f"holdout: {k} held-out clips leaves none of {n} videos for training")
    return [int(math.floor((i + 0.5) * n / k)) for i in range(k)]


def probe_size(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                          "-of", "json", path], check=True, capture_output=True, text=True).stdout
    s = json.loads(out)["streams"][0]
    return int(s["width"]), int(s["height"])


def cmd_pack(a):
    names = sorted(n for n in os.listdir(a.data) if os.path.splitext(n)[1].lower() in VIDEO_EXT)
    if not names:
        raise SystemExit(f"pack: no videos in {a.data}")
    held = set(held_out_indices(len(names), a.holdout))
    os.makedirs(a.out, exist_ok=True)
    index = {"clips": [], "held_out": [names[i] for i in sorted(held)]}
    for n in names:
        path = os.path.join(a.data, n)
        w, h = probe_size(path)
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             check=True, capture_output=True).stdout
        fb = w * h * 3
        if len(raw) % fb:
            raise SystemExit(f"pack: {n}: {len(raw)} bytes is not a whole number of {w}x{h} frames")
        f = np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, 3)
        d = f.copy()
        d[1:] = f[1:] - f[:-1]  # uint8 wrap-around deltas; undone with a cumulative sum mod 256
        with open(os.path.join(a.out, n + ".z"), "wb") as o:
            o.write(zlib.compress(d.tobytes(), 9))
        index["clips"].append({"name": n, "frames": int(f.shape[0]), "height": h, "width": w})
        print(f"packed {n}: {f.shape[0]} frames {w}x{h}", flush=True)
    with open(os.path.join(a.out, "index.json"), "w") as o:
        json.dump(index, o, indent=1)


def load_pack(d):
    if not os.path.isfile(os.path.join(d, "index.json")):
        raise SystemExit(f"{d}: no index.json (write the frames pack first: train_ae_torch.py pack --data DIR --out {d})")
    index = json.load(open(os.path.join(d, "index.json")))
    clips = []
    for c in index["clips"]:
        raw = zlib.decompress(open(os.path.join(d, c["name"] + ".z"), "rb").read())
        delta = np.frombuffer(raw, dtype=np.uint8).reshape(c["frames"], c["height"], c["width"], 3)
        f = np.cumsum(delta, axis=0, dtype=np.uint64) % 256  # undo the frame deltas
        clips.append((c["name"], f.astype(np.uint8)))
    return clips, set(index["held_out"])


# ---------------------------------------------------------------------------------------------------------------
# safetensors with metadata


def clip_tensor(f, frames=None, device=None):
    """uint8 frames (T, H, W, 3) of a pack -> a (1, 3, T, H, W) float clip in [-1, 1] (the first `frames` only)."""
    x = torch.from_numpy(f if frames is None else f[:frames])
    if device is not None:
        x = x.to(device)
    return x.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1


def save_safetensors(path, tensors, metadata):
    """F32 safetensors with our metadata, written to a temporary file and renamed (atomic)."""
    write_safetensors_as_stored(path, {k: tensors[k].detach().to("cpu", torch.float32) for k in sorted(tensors)}, metadata)


def read_metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def load_model(path):
    """(model in eval mode, the file's metadata) from weights that carry their config (dcvg train-ae's and these
    scripts' do)."""
    meta = read_metadata(path)
    if "config" not in meta:
        raise SystemExit(f"{path}: no embedded config (weights written by dcvg train-ae or the scripts carry one)")
    cfg = json.loads(meta["config"])
    m = torch_dcaev.DCAEV(cfg)
    m.load_state_dict(torch_dcaev.load_safetensors(path), strict=True)
    m.eval()
    return m, meta


def cmd_merge(a):
    sd = {}
    for p in a.parts:
        for k, v in torch_dcaev.load_safetensors(p).items():
            if k in sd:
                raise SystemExit(f"merge: {k} is in more than one part")
            sd[k] = v
    save_safetensors(a.out, sd, read_metadata(a.parts[0]))
    print(f"merged {len(sd)} tensors -> {a.out}")


# ---------------------------------------------------------------------------------------------------------------
# training


def init_scratch(model, seed):
    """src/train/init.ts: PyTorch's conv init (uniform +-1/sqrt(fan_in)), zero biases, norm scales 1, and the
    residual branches at zero (closing norm scale of each residual block, conv of each residual resampling block)."""
    g = torch.Generator().manual_seed(seed)
    for k, p in model.named_parameters():
        with torch.no_grad():
            if (".main.conv2.norm.weight" in k or ".main.conv.conv." in k) and ".stages." in k:
                p.zero_()
            elif p.dim() > 1:
                bound = 1 / math.sqrt(p.numel() / p.shape[0])
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
            elif k.endswith("weight"):
                p.fill_(1)
            else:
                p.zero_()


def with_depths(cfg, depths):
    cfg = json.loads(json.dumps(cfg))
    for part in ("encoder", "decoder"):
        if len(depths) != len(cfg[part]["depth_list"]):
            raise SystemExit(f"--depths needs {len(cfg[part]['depth_list'])} values")
        cfg[part]["depth_list"] = list(depths)
    return cfg


def grow_state_dict(sd, old_cfg, new_cfg, model, seed):
    """Weights of a model with more residual blocks per stage: the old blocks and resampling blocks keep their
    weights (encoder stages: the downsampling block moves behind the new blocks), new residual blocks start as the
    identity (closing norm scale 0), so the grown model computes exactly what the old one did."""
    out = {}
    for part in ("encoder", "decoder"):
        d_old, d_new = old_cfg[part]["depth_list"], new_cfg[part]["depth_list"]
        for s_, (do, dn) in enumerate(zip(d_old, d_new)):
            if dn < do or (do == 0 and dn > 0):
                raise SystemExit(f"--depths can only add blocks to stages that have some ({part} stage {s_})")
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "encoder" and parts[1] == "stages" and parts[3] == "op_list":
            s_, i = int(parts[2]), int(parts[4])
            do, dn = old_cfg["encoder"]["depth_list"][s_], new_cfg["encoder"]["depth_list"][s_]
            if i == do:  # the downsampling block
                parts[4] = str(dn)
        out[".".join(parts)] = v
    fresh = {k: v for k, v in model.state_dict().items() if k not in out}
    tmp = torch_dcaev.DCAEV(new_cfg)
    init_scratch(tmp, seed)
    init = tmp.state_dict()
    for k in fresh:
        out[k] = torch.zeros_like(init[k]) if k.endswith("conv2.norm.weight") else init[k]
    return out


class Sampler:
    """Random training windows on the device: whole chunks in time, a random crop, a random horizontal flip, or
    with probability still_prob one random frame repeated (a still image as a static clip)."""

    PERMS = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]

    def __init__(self, clips, frames, crop, still_prob, device, seed, color_aug=0.0):
        self.clips = [torch.from_numpy(f).to(device) for _, f in clips]
        self.long = [i for i, c in enumerate(self.clips) if c.shape[0] >= frames]
        if not self.long:
            raise SystemExit(f"no training clip has {frames} frames")
        for (n, _), c in zip(clips, self.clips):
            if c.shape[1] < crop or c.shape[2] < crop:
                raise SystemExit(f"{n} is {c.shape[2]}x{c.shape[1]}, smaller than the {crop} crop")
        self.T, self.S, self.p, self.color = frames, crop, still_prob, color_aug
        self.rng = random.Random(seed)

    def batch(self, B):
        out = []
        r = self.rng
        for _ in range(B):
            still = r.random() < self.p
            c = self.clips[r.choice(self.long)]
            if still:
                t0 = r.randrange(c.shape[0])
                idx = torch.full((self.T,), t0, device=c.device)
            else:
                t0 = r.randrange(c.shape[0] - self.T + 1)
                idx = torch.arange(t0, t0 + self.T, device=c.device)
            y0 = r.randrange(c.shape[1] - self.S + 1)
            x0 = r.randrange(c.shape[2] - self.S + 1)
            w = c.index_select(0, idx)[:, y0:y0 + self.S, x0:x0 + self.S]
            if r.random() < 0.5:
                w = w.flip(2)
            w = w.float()
            if self.color > 0 and r.random() < self.color:
                # as src/train/data.ts colorAug: channel order, then saturation 0.5-2x around the Rec. 601 luma
                w = w[..., list(r.choice(self.PERMS))]
                sat = math.exp(math.log(0.5) + r.random() * (math.log(2) - math.log(0.5)))
                y = (w * torch.tensor([0.299, 0.587, 0.114], device=w.device)).sum(-1, keepdim=True)
                w = (y + sat * (w - y)).clamp(0, 255)
            out.append(w)
        x = torch.stack(out).permute(0, 4, 1, 2, 3)  # (B, 3, T, S, S)
        return x / 127.5 - 1


def psnr_frames(y, x):
    """mean over frames of the PSNR of uint8-quantised frames; y, x: (1, 3, T, H, W) in [-1, 1]."""
    q = lambda t: torch.round((t.clamp(-1, 1) + 1) * 127.5)  # noqa: E731
    mse = (q(y) - q(x)).pow(2).mean(dim=(0, 1, 3, 4))
    return (10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-10))).tolist()


def main_train(a):
    if not (a.seconds > 0):
        raise SystemExit(f"--seconds must be > 0, got {a.seconds}")
    if a.batch < 1 or a.frames_per_clip < 1 or a.crop < 1:
        raise SystemExit("--batch, --frames-per-clip and --crop must be positive")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA device here (use --device cpu to try the script)")
    for what, path in (("--config", a.config), ("--init", None if a.init == "scratch" else a.init)):
        if path is not None and not os.path.isfile(path):
            raise SystemExit(f"{what} {path}: no such file")
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch_train_ae.use_batched_chunk_conv(True)
    cfg = json.load(open(a.config))
    if a.depths:
        cfg = with_depths(cfg, [int(v) for v in a.depths.split(",")])
    model = torch_dcaev.DCAEV(cfg)
    if a.init == "scratch":
        init_scratch(model, a.seed)
        start_step = 0
    else:
        sd = torch_dcaev.load_safetensors(a.init)
        if a.depths:
            sd = grow_state_dict(sd, json.loads(read_metadata(a.init)["config"]), cfg, model, a.seed)
        model.load_state_dict(sd, strict=True)
        start_step = int(read_metadata(a.init).get("step", "0"))
    model.to(dev).train()
    ema_model = torch_dcaev.DCAEV(cfg)
    ema_model.load_state_dict(model.state_dict())
    ema_model.to(dev).eval()
    params = list(model.parameters())
    ema_params = list(ema_model.parameters())

    clips, held = load_pack(a.frames)
    train = [c for c in clips if c[0] not in held]
    heldc = [c for c in clips if c[0] in held]
    sampler = Sampler(train, a.frames_per_clip, a.crop, a.still_prob, dev, a.seed, a.color_aug)
    held_t = [(n, clip_tensor(f, device=dev)) for n, f in heldc]

    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.weight_decay)
    os.makedirs(a.out, exist_ok=True)
    if a.log:
        os.makedirs(os.path.dirname(os.path.abspath(a.log)), exist_ok=True)
    logf = open(a.log, "a", buffering=1) if a.log else None

    def log(rec):
        rec = {"tag": a.tag, **rec}
        line = json.dumps(rec)
        print(line, flush=True)
        if logf:
            logf.write(line + "\n")

    def evaluate_and_save(step, elapsed):
        with torch.no_grad():
            per = []
            for n, x in held_t:
                T = x.shape[2] - x.shape[2] % ema_model.chunk
                xx = x[:, :, :T]
                per += psnr_frames(ema_model.decode(ema_model.encode(xx)), xx)
        sd = {k: v for k, v in ema_model.state_dict().items()}
        meta = {"config": json.dumps(cfg), "step": str(start_step + step), "format": "dcvg-dcaev-weights",
                "trained_with": "scripts/train_ae_torch.py " + " ".join(sys.argv[1:])}
        if a.no_save:
            pass
        elif a.split:
            save_safetensors(os.path.join(a.out, a.tag + "-encoder.safetensors"),
                             {k: v for k, v in sd.items() if k.startswith("encoder.")}, meta)
            save_safetensors(os.path.join(a.out, a.tag + "-decoder.safetensors"),
                             {k: v for k, v in sd.items() if not k.startswith("encoder.")}, meta)
        else:
            save_safetensors(os.path.join(a.out, a.tag + ".safetensors"), sd, meta)
        log({"step": start_step + step, "elapsed": round(elapsed, 1), "eval_psnr": sum(per) / max(1, len(per)),
             "frames": len(per)})

    log({"start": True, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
         "torch": torch.__version__, "train_clips": len(train), "held_out": sorted(held), "init": a.init,
         "init_step": start_step, "params": sum(p.numel() for p in params)})
    t_start = time.time()
    next_eval = a.eval_every
    step = 0
    w = a.ssim_weight
    while True:
        elapsed = time.time() - t_start
        if elapsed >= a.seconds:
            break
        step += 1
        p = min(1.0, elapsed / a.seconds)
        if step <= a.warmup:
            lr = a.lr * step / a.warmup
        else:
            lr = a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        x = sampler.batch(a.batch)
        y = model.decode(model.encode(x))
        l1 = (y - x).abs().mean()
        ss = torch_train_ae.ssim_loss(y, x, impl="conv")
        rec = l1 if a.loss == "l1" else (y - x).pow(2).mean()
        loss = rec + w * ss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema_params, a.ema)
            torch._foreach_add_(ema_params, params, alpha=1 - a.ema)
        if step % 50 == 0 or step == 1:
            acc = {"loss": float(loss), "l1": float(l1), "ssim": float(ss)}
            if not math.isfinite(acc["loss"]):
                log({"step": start_step + step, "error": "loss is not finite; stopping"})
                break
            log({"step": start_step + step, "elapsed": round(time.time() - t_start, 1), "lr": lr, **acc,
                 "steps_per_s": round(step / max(1e-9, time.time() - t_start), 2)})
        if time.time() - t_start >= next_eval:
            evaluate_and_save(step, time.time() - t_start)
            next_eval += a.eval_every
    evaluate_and_save(step, time.time() - t_start)
    log({"done": True, "steps": step, "seconds": round(time.time() - t_start, 1)})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--holdout", type=int, default=3)
    m = sub.add_parser("merge")
    m.add_argument("--parts", nargs="+", required=True)
    m.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--frames", required=True, help="folder written by `pack`")
    t.add_argument("--config", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--seconds", type=float, required=True)
    t.add_argument("--init", default="scratch")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--frames-per-clip", type=int, default=16)
    t.add_argument("--crop", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--min-lr-ratio", type=float, default=0.1)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--clip", type=float, default=1.0)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--ssim-weight", type=float, default=0.2)
    t.add_argument("--still-prob", type=float, default=0.1)
    t.add_argument("--color-aug", type=float, default=0.0, help="probability of a colour change per sample (as dcvg train-ae)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=float, default=60)
    t.add_argument("--split", action="store_true")
    t.add_argument("--log")
    t.add_argument("--tag", default="model")
    t.add_argument("--device", default="cuda")
    t.add_argument("--no-save", action="store_true", help="evaluate only, write no weights")
    t.add_argument("--loss", choices=["l1", "mse"], default="l1", help="reconstruction term (default l1, as ours)")
    t.add_argument("--depths", help="grow the model: residual blocks per stage, e.g. 0,1,1,1,2,2,2 (new blocks start as identity)")
    a = ap.parse_args()
    if a.cmd == "pack":
        cmd_pack(a)
    elif a.cmd == "merge":
        cmd_merge(a)
    else:
        main_train(a)


if __name__ == "__main__":
    main()
