"""PyTorch side of `npm run bench:adapt`: the AE-Adapt-V phase-3 (LoRA) training step of a Wan DiT in plain torch.

The DiT is bench/torch_wan.py's WanDiT (written from the spec, Wan's state-dict names). Every Linear named in
--targets is wrapped in a plain LoRA layer: the frozen nn.Linear plus A (r, in) and B (out, r) without bias,
forward base(x) + (B(A(x))) * alpha / r (peft's arithmetic, dropout 0). Trainable: the adapters, patch_embedding,
head.head and head.modulation; every other parameter has requires_grad False (so autograd computes no weight gradient
for it). One step, as src/train/loop.ts runs it for `dcvg adapt lora`:

  noisy = float32(1 - sigma) * x0 + sigma * noise, target = noise - x0      (the flow-matching inputs, spec 5.5)
  pred = model(noisy, t, ctx); loss = mean(w * (pred - target)^2)           (t the raw integer timestep)
  loss.backward(); clip_grad_norm_(trainable, clip); AdamW (betas 0.9/0.999, eps 1e-8, wd 0) at the given lr;
  zero_grad; EMA: shadow = d * shadow + (1 - d) * param, d = min(decay, (1 + n) / (10 + n)) for the n-th update.

  torch_adapt.py serve --config CFG.json --weights W.safetensors --inputs I.safetensors --rank R --alpha A
                       --targets T.json [--threads 2] [--clip 0.1] [--ema 0.9999] [--keep-grads]
      W holds every base tensor in Wan keys plus <layer>.lora_A.weight / <layer>.lora_B.weight; I holds x0, noise,
      context, t, sigma, weight (per sample). Commands on stdin, one JSON line each on stdout:
        "step LR"   one training step at learning rate LR: {"ms", "cpu_ms", "loss", "grad_norm"}
        "dump PATH" writes the trainable tensors (param.<key>), their EMA shadows (ema.<key>) and, with --keep-grads,
                    the last step's gradients before clipping (grad.<key>) as safetensors: {"ok": true}
        "quit"      exits. The first line printed is {"ready": true, ...}.
      --double runs the same step in float64 (weights and inputs widened): a reference for both float32 sides.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import load_safetensors, save_safetensors  # noqa: E402
import torch_wan  # noqa: E402
from torch_wan import WanDiT  # noqa: E402

TRAIN_FULLY = ("patch_embedding.weight", "patch_embedding.bias", "head.head.weight", "head.head.bias", "head.modulation")


class LoraLinear(nn.Module):
    """A frozen nn.Linear plus the low-rank update B A scaled by alpha / r."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scale


def use_float64():
    """torch_wan computes RoPE and the sinusoid in float32 (as the reference); widened here for --double."""
    rope_freqs, sinusoid = torch_wan.rope_freqs, torch_wan.sinusoid
    torch_wan.rope_freqs = lambda grid, head_dim: rope_freqs(grid, head_dim).to(torch.complex128)
    torch_wan.rope_apply = lambda x, freqs: torch.view_as_real(torch.view_as_complex(x.reshape(*x.shape[:3], -1, 2)) * freqs).flatten(3)
    torch_wan.sinusoid = lambda t, dim: sinusoid(t, dim).double()


class Trainer:
    def __init__(self, a):
        torch.set_num_threads(a.threads)
        if a.double:
            use_float64()
        cfg = json.load(open(a.config))
        cfg = cfg.get("config", cfg)
        self.model = WanDiT(cfg)
        sd = load_safetensors(a.weights)
        base = {k: v for k, v in sd.items() if ".lora_" not in k}
        self.model.load_state_dict(base, strict=True)
        dt = torch.float64 if a.double else torch.float32
        self.model.to(dt)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.names = {}  # our key -> torch parameter
        for path in json.load(open(a.targets)):
            parent_path, _, name = path.rpartition(".")
            parent = self.model.get_submodule(parent_path)
            lin = parent._modules[name]
            lora = LoraLinear(lin, a.rank, a.alpha).to(dt)
            with torch.no_grad():
                lora.lora_A.weight.copy_(sd[path + ".lora_A.weight"])
                lora.lora_B.weight.copy_(sd[path + ".lora_B.weight"])
            parent._modules[name] = lora
            self.names[path + ".lora_A.weight"] = lora.lora_A.weight
            self.names[path + ".lora_B.weight"] = lora.lora_B.weight
        params = dict(self.model.named_parameters())
        for k in TRAIN_FULLY:
            params[k].requires_grad_(True)
            self.names[k] = params[k]
        self.params = list(self.names.values())
        self.opt = torch.optim.AdamW(self.params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        self.clip = a.clip
        self.decay = a.ema
        self.ema_updates = 0
        self.shadows = [p.detach().clone() for p in self.params] if a.ema > 0 else None
        self.keep_grads = a.keep_grads
        self.grads = None
        io = {k: v.to(dt) for k, v in load_safetensors(a.inputs).items()}
        self.x0, self.noise, self.ctx, self.t = io["x0"], io["noise"], io["context"], io["t"]
        shape = [-1] + [1] * (self.x0.dim() - 1)
        self.sigma = io["sigma"].view(shape)
        self.one_minus_sigma = (1 - io["sigma"].double()).float().to(dt).view(shape)  # as ours: fround(1 - sigma)
        self.weight = io["weight"].view(shape)

    def step(self, lr):
        t0 = time.perf_counter()
        c0 = time.process_time()
        for g in self.opt.param_groups:
            g["lr"] = lr
        noisy = self.one_minus_sigma * self.x0 + self.sigma * self.noise
        target = self.noise - self.x0
        pred = self.model(noisy, self.t, self.ctx)
        loss = (self.weight * (pred - target).square()).mean()
        loss.backward()
        if self.keep_grads:
            self.grads = [p.grad.detach().clone() for p in self.params]
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip) if self.clip > 0 else None
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.shadows is not None:
            with torch.no_grad():
                d = min(self.decay, (1 + self.ema_updates) / (10 + self.ema_updates))
                torch._foreach_mul_(self.shadows, d)
                torch._foreach_add_(self.shadows, [p.detach() for p in self.params], alpha=1 - d)
            self.ema_updates += 1
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (time.process_time() - c0) * 1000  # all threads of the process
        return {"ms": ms, "cpu_ms": cpu_ms, "loss": float(loss), "grad_norm": float(norm) if norm is not None else None}

    def dump(self, path):
        out = {}
        for i, (k, p) in enumerate(self.names.items()):
            out["param." + k] = p.detach()
            if self.shadows is not None:
                out["ema." + k] = self.shadows[i]
            if self.grads is not None:
                out["grad." + k] = self.grads[i]
        save_safetensors(path, out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    for path_arg in ("--config", "--weights", "--inputs", "--targets"):
        s.add_argument(path_arg, required=True)
    s.add_argument("--rank", type=int, required=True)
    s.add_argument("--alpha", type=float, required=True)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--clip", type=float, default=0.1)
    s.add_argument("--ema", type=float, default=0.9999)
    s.add_argument("--keep-grads", action="store_true")
    s.add_argument("--double", action="store_true")
    a = ap.parse_args()
    tr = Trainer(a)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "trainable": sum(p.numel() for p in tr.params)}), flush=True)
    def dump(path):
        tr.dump(path)
        return {"ok": True}

    handlers = {"step": lambda lr: tr.step(float(lr)), "dump": dump}
    for line in sys.stdin:
        name, *args = line.split() or [""]
        if name == "quit":
            break
        if name:
            fn = handlers.get(name)
            print(json.dumps(fn(*args) if fn else {"error": "unknown command " + name}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
