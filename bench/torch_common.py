"""Helpers the PyTorch sides of the benchmarks share (bench/torch_dcaev.py, torch_wan.py, torch_train_ae.py and, through
torch_dcaev, scripts/train_ae_torch.py): safetensors without the `safetensors` package, peak memory, relative error.
The TypeScript side of the same helpers is bench/torch.ts."""
import json
import os
import resource
import struct

import numpy as np
import torch

_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def load_safetensors(path):
    """name -> float32 tensor; each tensor is read straight into its own buffer (no intermediate copies)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            a, b = v["data_offsets"]
            f.seek(base + a)
            buf = bytearray(b - a)
            f.readinto(buf)
            if v["dtype"] == "F32":
                t = torch.frombuffer(buf, dtype=torch.float32) if buf else torch.empty(0)
            elif v["dtype"] == "BF16":
                t = torch.frombuffer(buf, dtype=torch.bfloat16).float()
            else:
                t = torch.from_numpy(np.frombuffer(buf, dtype=_DT[v["dtype"]]).astype(np.float32))
            out[k] = t.reshape(v["shape"])
    return out


def save_safetensors(path, tensors):
    """Writes name -> tensor as float32 safetensors (header padded to 8 bytes)."""
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.detach().contiguous().float().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


_ST = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
_ST_NAME = {v: k for k, v in _ST.items()}
_RAW = {torch.float32: np.float32, torch.bfloat16: np.int16, torch.float16: np.float16}


def read_safetensors_as_stored(path):
    """(name -> tensor in its stored dtype (F32, BF16, F16), the header's metadata)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        dt = _ST[v["dtype"]]
        t = torch.from_numpy(np.frombuffer(data[a:b], dtype=_RAW[dt]).copy())
        out[k] = (t.view(torch.bfloat16) if dt == torch.bfloat16 else t).reshape(v["shape"])
    return out, meta


def write_safetensors_as_stored(path, tensors, metadata=None):
    """Writes name -> tensor in its own dtype (F32, BF16, F16) with metadata, to a temporary file renamed (atomic)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        b = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[k] = {"dtype": _ST_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def reset_peak_rss():
    """Resets VmHWM (and so ru_maxrss) to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def rel(a, b):
    """max |a - b| / max |b| of two tensors."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
