"""Hands an AE-Adapt-V phase (dcvg adapt tune / lora) over to PyTorch (FSDP) and back, unchanged (docs/adapt.md,
"On GPUs (PyTorch, FSDP)").

  python3 scripts/adapt_torch.py to-torch RUN_DIR OUT_DIR     # dcvg run folder -> PyTorch files
  python3 scripts/adapt_torch.py from-torch IN_DIR RUN_DIR    # PyTorch files -> a dcvg run folder to --resume

OUT_DIR / IN_DIR hold
  model.pt      the full (unsharded) model state dict in the reference's names (Wan keys; phase 3 with peft's names:
                <layer>.base_layer.weight, <layer>.lora_A.default.weight), every tensor in its stored dtype: load it
                with model.load_state_dict(sd, strict=True) before wrapping in FSDP
  optim.pt      the AdamW state keyed by parameter name, the layout FSDP.optim_state_dict() writes and
                FSDP.optim_state_dict_to_load(model, optim, osd) reads: {"state": {name: {"step", "exp_avg",
                "exp_avg_sq"}}, "param_groups": [{"params": [names], "lr", "betas", "eps", "weight_decay", ...}]}
  ema.pt        the EMA shadows by parameter name (phase 3; empty without an EMA)
  dcvg_train.json  the TS run state (options, step, RNG states, data order); from-torch writes it back, with "step"
                and "adamSteps" taken from optim.pt when a torch run went further
Only torch and numpy are needed (no safetensors package). The module is a plain tree of nn.Modules named after the
keys (the same state dict keys as Wan's WanModel, which a real run uses instead).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from torch_common import read_safetensors_as_stored as read_st, write_safetensors_as_stored as write_st  # noqa: E402

def peft_name(key, layers):
    """Wan key -> peft's in-memory name (phase 3 layers only)."""
    for layer in layers:
        if key.startswith(layer + "."):
            rest = key[len(layer) + 1:]
            if rest in ("weight", "bias"):
                return f"{layer}.base_layer.{rest}"
            if rest in ("lora_A.weight", "lora_B.weight"):
                return f"{layer}.{rest[:6]}.default.weight"
    return key


def dcvg_name(key):
    return key.replace(".base_layer.", ".").replace(".default.weight", ".weight")


def module_tree(sd, trainable, buffers):
    """A module whose state_dict() has exactly the keys of sd (parameters, buffers), same tensors and dtypes."""
    root = torch.nn.Module()
    for k, v in sd.items():
        *path, leaf = k.split(".")
        m = root
        for p in path:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        if k in buffers:
            m.register_buffer(leaf, v.clone())
        else:
            m.register_parameter(leaf, torch.nn.Parameter(v.clone(), requires_grad=k in trainable))
    return root


def to_torch(run_dir, out_dir):
    model, mmeta = read_st(os.path.join(run_dir, "model.safetensors"))
    ckpt, cmeta = read_st(os.path.join(run_dir, "checkpoint.safetensors"))
    run = json.loads(cmeta["dcvg_train"])
    layers = json.loads(mmeta.get("lora_targets", "[]"))
    trained = [k[len("model."):] for k in ckpt if k.startswith("model.")]
    # the live weights of the trained tensors are in the checkpoint (model.safetensors has their EMA values)
    for k in trained:
        model[k] = ckpt["model." + k]
    sd = {peft_name(k, layers): v for k, v in model.items()}
    names = [peft_name(k, layers) for k in trained]
    module = module_tree(sd, set(names), {"null_embedding"})
    params = dict(module.named_parameters())
    o = run["options"]
    opt = torch.optim.AdamW([params[n] for n in names], lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=1e-8, weight_decay=o["weightDecay"])
    for k, n in zip(trained, names):
        opt.state[params[n]] = {"step": torch.tensor(float(run["adamSteps"])), "exp_avg": ckpt["adam_m." + k].clone(), "exp_avg_sq": ckpt["adam_v." + k].clone()}
    # torch's own state dict (parameter ids), then keyed by name as FSDP.optim_state_dict() does
    osd = opt.state_dict()
    by_name = {"state": {names[i]: s for i, s in osd["state"].items()}, "param_groups": [dict(g, params=[names[i] for i in g["params"]]) for g in osd["param_groups"]]}
    os.makedirs(out_dir, exist_ok=True)
    torch.save(module.state_dict(), os.path.join(out_dir, "model.pt"))
    torch.save(by_name, os.path.join(out_dir, "optim.pt"))
    torch.save({peft_name(k, layers): ckpt["ema." + k] for k in trained if "ema." + k in ckpt}, os.path.join(out_dir, "ema.pt"))
    with open(os.path.join(out_dir, "dcvg_train.json"), "w") as f:
        json.dump({"dcvg_train": run, "model_metadata": mmeta}, f)


def from_torch(in_dir, run_dir):
    with open(os.path.join(in_dir, "dcvg_train.json")) as f:
        j = json.load(f)
    run, mmeta = j["dcvg_train"], j["model_metadata"]
    sd = torch.load(os.path.join(in_dir, "model.pt"))
    by_name = torch.load(os.path.join(in_dir, "optim.pt"))
    ema = torch.load(os.path.join(in_dir, "ema.pt"))
    # what torch does with them: a module of these names and an AdamW that loads the state
    names = by_name["param_groups"][0]["params"]
    module = module_tree(sd, set(names), {"null_embedding"})
    module.load_state_dict(sd, strict=True)
    params = dict(module.named_parameters())
    g = by_name["param_groups"][0]
    opt = torch.optim.AdamW([params[n] for n in names], lr=g["lr"], betas=g["betas"], eps=g["eps"], weight_decay=g["weight_decay"])
    opt.load_state_dict({"state": {names.index(n): s for n, s in by_name["state"].items()}, "param_groups": [dict(g, params=list(range(len(names))))]})
    steps = {int(opt.state[params[n]]["step"].item()) for n in names}
    assert len(steps) == 1, f"parameters at different AdamW steps: {steps}"
    adam_steps = steps.pop()
    run["step"] += adam_steps - run["adamSteps"]  # a torch run that went further moves the step on with it
    run["adamSteps"] = adam_steps
    msd = module.state_dict()
    ckpt = {}
    for n in names:
        k = dcvg_name(n)
        ckpt["model." + k] = msd[n]
        if n in ema:
            ckpt["ema." + k] = ema[n]
        ckpt["adam_m." + k] = opt.state[params[n]]["exp_avg"]
        ckpt["adam_v." + k] = opt.state[params[n]]["exp_avg_sq"]
    os.makedirs(run_dir, exist_ok=True)
    write_st(os.path.join(run_dir, "checkpoint.safetensors"), ckpt, {"dcvg_train": json.dumps(run)})
    # model.safetensors as the phase exports it: EMA values of the trained tensors where there is an EMA
    out = {dcvg_name(n): (ema[n] if n in ema else t) for n, t in msd.items()}
    write_st(os.path.join(run_dir, "model.safetensors"), out, dict(mmeta, step=str(run["step"])))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("to-torch", "from-torch"):
        sys.exit(__doc__)
    (to_torch if sys.argv[1] == "to-torch" else from_torch)(sys.argv[2], sys.argv[3])
