"""Rescales the decoder's inner features of a DC-AE-V to unit RMS without changing what the model computes (run with
/usr/bin/python3, which has torch; a CPU is enough, seconds).

  rescale_decoder.py --frames .gpu/frames --weights W.safetensors --out W2.safetensors [--from-stage 3]
                     [--frames-per-clip 16] [--threads 2]

Why: a model from scripts/init_ae_linear.py carries large features in its low-resolution stages (they grow 4x per
encoder block, and its decoder reproduces them), so a residual block there, whose output scale starts at zero and
moves by about the learning rate per AdamW step, needs thousands of steps before it adds anything. In the decoder the
scale is free: each up block's conv can absorb a rescaling of its input and output (its duplicating shortcut is a
per-cell selection the conv can represent) and each residual block is exactly equivariant to it (conv1's weight
scaled up by s, the closing RMSNorm's scale and bias down by s). This script measures the RMS of the decoder's
features at each stage on the training clips of a frames pack (scripts/train_ae_torch.py pack) and divides the
features of every stage from --from-stage up to the latent by it; stages below keep their scale (the last up block's
constant head channels stay as they are). The output is the same function (checked: the script prints the largest
difference of the reconstructions of the first training clip, relative to their range) with the config embedded.
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import torch_dcaev as D  # noqa: E402
from train_ae_torch import clip_tensor, load_model, load_pack, save_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--from-stage", type=int, default=3)
    ap.add_argument("--frames-per-clip", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not a.out.endswith(".safetensors"):
        raise SystemExit(f"--out must end in .safetensors, got {a.out}")
    torch.set_num_threads(a.threads)
    m, meta = load_model(a.weights)
    dec = m.decoder
    n = len(dec.stages)
    if not 1 <= a.from_stage < n:
        raise SystemExit(f"--from-stage must be in 1..{n - 1}, got {a.from_stage}")
    clips, held = load_pack(a.frames)
    xs = [clip_tensor(f, a.frames_per_clip) for name, f in clips if name not in held]
    if not xs:
        raise SystemExit(f"{a.frames}: no training clips")

    @torch.no_grad()
    def stage_rms():
        """RMS of the decoder's features after each stage (index s), and after project_in (index n)."""
        acc = [0.0] * (n + 1)
        for x in xs:
            h = dec.project_in(m.encode(x))
            acc[n] += h.pow(2).mean().item()
            for s in reversed(range(n)):
                h = dec.stages[s](h)
                acc[s] += h.pow(2).mean().item()
        return [(v / len(xs)) ** 0.5 for v in acc]

    with torch.no_grad():
        before = m.decode(m.encode(xs[0]))
    rms = stage_rms()
    with torch.no_grad():
        pin = dec.project_in.conv
        pin.weight /= rms[n]
        pin.bias /= rms[n]
        s_in = rms[n]  # the scale the features now carry, divided out
        for s in reversed(range(n)):
            for op in dec.stages[s].op_list:
                if isinstance(op.main, D.ConvPixelShuffleUp):
                    # the up block's output is divided by s_out instead; its shortcut passes the input (divided by
                    # s_in) through, so the conv adds (ratio - 1) x that selection to keep the sum right
                    s_out = rms[s] if s >= a.from_stage else 1.0
                    layer = op.main.conv
                    conv = layer.conv
                    ratio = s_in / s_out
                    conv.weight *= ratio
                    conv.bias /= s_out
                    kt, kh, kw = conv.weight.shape[2:]
                    t = kt - 1 if layer.mode == "causal" else kt // 2
                    for k in range(conv.weight.shape[0]):
                        conv.weight[k, k // op.shortcut.r, t, kh // 2, kw // 2] += ratio - 1
                    s_in = s_out
                elif isinstance(op.main, D.ResBlock3d):
                    op.main.conv1.conv.weight *= s_in
                    op.main.conv2.norm.weight /= s_in
                    op.main.conv2.norm.bias /= s_in
        if s_in != 1.0:
            raise SystemExit("the decoder's last up block must end at the original scale")
        after = m.decode(m.encode(xs[0]))
    err = ((after - before).abs().max() / (before.max() - before.min())).item()
    print("decoder feature RMS per stage before:", ", ".join(f"{v:.3g}" for v in rms))
    print("after:", ", ".join(f"{v:.3g}" for v in stage_rms()))
    print(f"largest change of the first training clip's reconstruction: {err:.2e} of its range")
    if err > 1e-4:
        raise SystemExit("the rescaled model does not compute the same function; nothing written")
    meta = dict(meta)
    meta["rescaled"] = "scripts/rescale_decoder.py " + " ".join(sys.argv[1:])
    save_safetensors(a.out, m.state_dict(), meta)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
