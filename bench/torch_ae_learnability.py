#!/usr/bin/env python3
"""The official Wan-2.1 VAE trained on exactly the run `bench/ae_learnability.ts --dump DIR` made with ours: the
same initial weights, the same batch at every step, the same loss, clipping, optimiser and schedule. It tells a defect
of our implementation (the two trainings part ways) from a property of the model and recipe (they fail alike).

    node dist/bench/ae_learnability.js --data D --clips 64 --steps 400 --dump /tmp/learn64
    /usr/bin/python3 bench/torch_ae_learnability.py --official ~/Wan2.1 --dump /tmp/learn64 [--threads 2]

Longer runs on the same frames (--steps N beyond the recorded run's, or --resample): each step then draws --batch
frames at random (torch.Generator seeded by --seed) from all the recorded batches' frames, a pool of steps x batch
frames (single-frame runs only), with --lr overriding the recorded rate. --model plain trains instead a plain
convolutional autoencoder with the same f8c16 bottleneck and no normalisation (3x3 conv to width 32, three stride-2
4x4 convs (32, 64, 64), 3x3 conv to 16 latent channels; the mirror with transposed convs; SiLU; PyTorch's default
init, or with --plain-init lecun its conv weights times sqrt(3): variance 1 / fan_in, as train-ae's default), the
reference point for "how hard is this data at this compression".

The official `wan/modules/vae.py` is imported from --official as it is (with bench/torch_wan_vae.py's einops stub
and torch < 2.0 attention shim); nothing of it is copied. Encoding and decoding follow its `WanVAE_.encode` /
`.decode` (frame chunks 1, 4, 4, ... with the feature cache; one latent frame at a time), without the latent
normalisation (the training run has none) and with autograd on. The latent is mu (no KL, as the bench). Loss: MSE
(or L1) over all values; torch.nn.utils.clip_grad_norm_(1.0); torch.optim.AdamW(betas (0.9, 0.999), eps 1e-8,
weight decay 0); the learning rate min(1, step / warmup) x lr set before each step. Prints, every `every` steps as
the bench does, the loss and the PSNR over the object's values and the whole frame on the dumped evaluation batch,
next to ours (from ours.json) when it is there, and writes torch.json (per-step loss and evaluations).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import load_safetensors  # noqa: E402
from torch_wan_vae import install_einops_stub, install_sdpa_shim, load_official  # noqa: E402

KWARGS = ("dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "temperal_downsample", "dropout")


def encode_mu(model, x):
    """WanVAE_.encode without the latent normalisation: chunks of 1, 4, 4, ... frames through the feature cache."""
    model.clear_cache()
    t = x.shape[2]
    outs = []
    for i in range(1 + (t - 1) // 4):
        model._enc_conv_idx = [0]
        chunk = x[:, :, :1] if i == 0 else x[:, :, 1 + 4 * (i - 1):1 + 4 * i]
        outs.append(model.encoder(chunk, feat_cache=model._enc_feat_map, feat_idx=model._enc_conv_idx))
    mu, _ = model.conv1(torch.cat(outs, 2)).chunk(2, dim=1)
    model.clear_cache()
    return mu


def decode_raw(model, z):
    """WanVAE_.decode without the latent normalisation: one latent frame at a time through the feature cache."""
    model.clear_cache()
    x = model.conv2(z)
    outs = []
    for i in range(z.shape[2]):
        model._conv_idx = [0]
        outs.append(model.decoder(x[:, :, i:i + 1], feat_cache=model._feat_map, feat_idx=model._conv_idx))
    model.clear_cache()
    return torch.cat(outs, 2)


def plain_autoencoder(z_dim, w=32):
    """f8 with z_dim latent channels, no normalisation (see the file comment)."""
    nn = torch.nn
    enc = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, w, 4, 2, 1), nn.SiLU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),
                        nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.SiLU(), nn.Conv2d(2 * w, z_dim, 3, 1, 1))
    dec = nn.Sequential(nn.Conv2d(z_dim, 2 * w, 3, 1, 1), nn.SiLU(), nn.ConvTranspose2d(2 * w, 2 * w, 4, 2, 1), nn.SiLU(),
                        nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(w, w, 4, 2, 1), nn.SiLU(), nn.Conv2d(w, 3, 3, 1, 1))
    return nn.Sequential(enc, dec)


def psnr(se, n):
    return 10 * math.log10(4 / (se / n))  # values in [-1, 1]: peak-to-peak 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, help="default: the recorded run's; more draws frames at random")
    ap.add_argument("--resample", action="store_true", help="draw frames at random even within the recorded steps")
    ap.add_argument("--batch", type=int, help="with random draws; default the recorded batch")
    ap.add_argument("--lr", type=float, help="default: the recorded run's")
    ap.add_argument("--every", type=int, help="default: the recorded run's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", choices=("official", "plain"), default="official")
    ap.add_argument("--plain-init", choices=("torch", "lecun"), default="torch", help="--model plain: PyTorch's default init or LeCun's scale")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    install_einops_stub()
    install_sdpa_shim()
    vae, path = load_official(a.official)
    d = a.dump
    run = json.load(open(os.path.join(d, "run.json")))
    cfg = json.load(open(os.path.join(d, "config.json")))
    steps = a.steps or run["steps"]
    every = a.every or run["every"]
    lr = a.lr if a.lr is not None else run["lr"]
    resample = a.resample or steps > run["steps"] or a.model == "plain"
    torch.manual_seed(a.seed)
    if a.model == "official":
        model = vae.WanVAE_(**{k: cfg[k] for k in KWARGS if k in cfg})
        model.load_state_dict(load_safetensors(os.path.join(d, "init.safetensors")), strict=True)

        def reconstruct(x):
            return decode_raw(model, encode_mu(model, x))
    else:
        model = plain_autoencoder(cfg.get("z_dim", 16))
        if a.plain_init == "lecun":
            # PyTorch's default bound is 1 / sqrt(fan_in) (kaiming_uniform, a = sqrt(5)); LeCun's is sqrt(3 / fan_in)
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                        m.weight.mul_(math.sqrt(3))

        def reconstruct(x):
            if x.shape[2] != 1:
                sys.exit("torch_ae_learnability.py: --model plain takes single-frame runs only")
            return model(x[:, :, 0]).unsqueeze(2)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ev = torch.from_numpy(np.fromfile(os.path.join(d, "eval.f32"), dtype="<f4").reshape(run["evalShape"]).copy())
    mask = torch.from_numpy(np.fromfile(os.path.join(d, "eval_mask.u8"), dtype=np.uint8).reshape(run["evalShape"]).astype(bool))
    shape = run["batchShape"]
    per = int(np.prod(shape))
    batches = np.memmap(os.path.join(d, "batches.f32"), dtype="<f4", mode="r")
    if batches.size < per * run["steps"]:
        sys.exit(f"torch_ae_learnability.py: batches.f32 holds {batches.size // per} steps, run.json says {run['steps']}")
    if resample and run["frames"] != 1:
        sys.exit("torch_ae_learnability.py: random draws (--steps beyond the record, --resample, --model plain) take single-frame runs only")
    frame = [3, 1] + shape[3:]
    pool = torch.from_numpy(np.array(batches[:per * run["steps"]])).reshape([-1] + frame) if resample else None
    draw = torch.Generator().manual_seed(a.seed)
    batch = a.batch or shape[0]
    ours = {}
    if os.path.isfile(os.path.join(d, "ours.json")) and not resample:
        ours = {r["step"]: r for r in json.load(open(os.path.join(d, "ours.json")))}
    if run["loss"] not in ("mse", "l1") or run.get("fgWeight", 0) > 0:
        sys.exit("torch_ae_learnability.py: only plain MSE / L1 runs (no --fg-weight) are mirrored")

    def evaluate():
        with torch.no_grad():
            e = (reconstruct(ev) - ev) ** 2
        return f"object {psnr(e[mask].sum().item(), int(mask.sum())):.2f} dB, whole frame {psnr(e.sum().item(), e.numel()):.2f} dB"

    what = f"official WanVAE_ ({path})" if a.model == "official" else f"plain conv autoencoder ({a.plain_init} init)"
    how = f"random draws from {pool.shape[0]} frames, batch {batch}" if resample else "the recorded batches"
    print(f"{what}, {sum(p.numel() for p in params)} parameters, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{steps} steps on {how}, lr {lr}; recorded run {json.dumps(run)}")
    print(f"step 0: {evaluate()}")
    hist = []
    t0 = time.perf_counter()
    for s in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = min(1.0, s / run["warmup"]) * lr
        ts = time.perf_counter()
        if resample:
            x = pool[torch.randint(0, pool.shape[0], (batch,), generator=draw)]
        else:
            x = torch.from_numpy(np.array(batches[(s - 1) * per:s * per])).reshape(shape)
        y = reconstruct(x)
        loss = F.mse_loss(y, x) if run["loss"] == "mse" else F.l1_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, run["clip"]).item()
        opt.step()
        rec = {"step": s, "loss": loss.item(), "grad_norm": gn, "ms": (time.perf_counter() - ts) * 1e3}
        if s % every == 0 or s == steps or s <= 5:
            if s % every == 0 or s == steps:
                rec["eval"] = evaluate()
                rec["ms_per_step"] = (time.perf_counter() - t0) * 1e3 / s
            o = ours.get(s)
            line = f"step {s}: loss {rec['loss']:.6f}" + (f" (ours {o['loss']:.6f})" if o else "")
            if "eval" in rec:
                line += f", {rec['eval']}" + (f" (ours {o['eval']})" if o and o.get("eval") else "") + f" ({rec['ms_per_step']:.0f} ms/step)"
            print(line, flush=True)
        hist.append(rec)
    ms = sorted(r["ms"] for r in hist)
    line = f"median step {ms[len(ms) // 2]:.0f} ms over {len(ms)} steps"
    o = sorted(r["ms"] for r in ours.values() if "ms" in r)
    if o and not resample:
        line += f" (ours {o[len(o) // 2]:.0f} ms: ratio ours / official {o[len(o) // 2] / ms[len(ms) // 2]:.3f})"
    print(line)
    out = "torch.json" if not resample else f"torch_{a.model}_{steps}_b{batch}_lr{lr:g}_s{a.seed}.json"
    with open(os.path.join(d, out), "w") as f:
        json.dump(hist, f)


if __name__ == "__main__":
    main()
