"""PyTorch side of the side-by-side benchmarks: reads one case name per line on stdin, runs it once, prints the
elapsed milliseconds. Tensors are created once per case, so only the op itself is timed. 2 threads, fp32, CPU."""
import json
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)
F = torch.nn.functional
cases = {}


def setup(name):
    kind, *rest = name.split(":")
    if kind == "sgemm":
        n = int(rest[0])
        a, b = torch.randn(n, n), torch.randn(n, n)
        return lambda: torch.mm(a, b)
    if kind in ("conv3d_fwd", "conv3d_fwdbwd"):
        c, t, h = (int(v) for v in rest)
        x = torch.randn(1, c, t, h, h, requires_grad=kind.endswith("bwd"))
        w = (torch.randn(c, c, 3, 3, 3) * 0.02).requires_grad_(kind.endswith("bwd"))
        b = torch.zeros(c, requires_grad=kind.endswith("bwd"))
        if kind == "conv3d_fwd":
            def f():
                with torch.no_grad():
                    return F.conv3d(x, w, b, padding=1)
            return f
        g = torch.randn(1, c, t, h, h)

        def fb():
            x.grad = w.grad = b.grad = None
            y = F.conv3d(x, w, b, padding=1)
            y.backward(g)
        return fb
    if kind in ("attn_fwd", "attn_fwdbwd"):
        heads, L, d = (int(v) for v in rest)
        need = kind.endswith("bwd")
        q, k, v = (torch.randn(1, heads, L, d, requires_grad=need) for _ in range(3))
        scale = d ** -0.5

        def att():
            s = torch.matmul(q, k.transpose(-1, -2)) * scale
            return torch.matmul(torch.softmax(s, dim=-1), v)
        if not need:
            def f():
                with torch.no_grad():
                    return att()
            return f
        g = torch.randn(1, heads, L, d)

        def fb():
            q.grad = k.grad = v.grad = None
            att().backward(g)
        return fb
    raise ValueError("unknown case " + name)


print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "config": torch.__config__.parallel_info().splitlines()[:6]}), flush=True)
for line in sys.stdin:
    name = line.strip()
    if not name:
        continue
    if name not in cases:
        cases[name] = setup(name)
        cases[name]()  # warm-up (allocations, oneDNN primitive creation)
    t0 = time.perf_counter()
    cases[name]()
    ms = (time.perf_counter() - t0) * 1000
    print(json.dumps({"ms": ms}), flush=True)
