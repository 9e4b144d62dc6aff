/** uint8 RGB frames <-> video tensors in [-1, 1], and the one [-1, 1] -> uint8 quantiser. */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';

/** 0..255 -> [-1, 1], exactly as (v / 127.5 - 1) in float32. */
const U8_TO_UNIT = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = v / 127.5 - 1;
  return t;
})();

/**
 * n frames of HxWx3 uint8 (frame-major, interleaved RGB) -> Tensor (1, 3, n, H, W) in [-1, 1]; n is inferred from
 * the length.
 */
export function framesToTensor(frames: Uint8Array, height: number, width: number): Tensor {
  if (!(frames instanceof Uint8Array)) throw new ValueError(`framesToTensor: frames must be a Uint8Array, got ${(frames as object)?.constructor?.name}`);
  checkDims(width, height, 'framesToTensor');
  const hw = height * width;
  if (frames.length % (hw * 3) !== 0)
    throw new ShapeError(`framesToTensor: ${frames.length} bytes is not a whole number of ${height}x${width}x3 frames`);
  const n = frames.length / (hw * 3);
  const out = new Float32Array(frames.length);
  const plane = n * hw;
  for (let t = 0; t < n; t++) {
    const src = t * hw * 3;
    const r = t * hw;
    const g = plane + r;
    const b = 2 * plane + r;
    for (let p = 0, s = src; p < hw; p++, s += 3) {
      out[r + p] = U8_TO_UNIT[frames[s]!]!;
      out[g + p] = U8_TO_UNIT[frames[s + 1]!]!;
      out[b + p] = U8_TO_UNIT[frames[s + 2]!]!;
    }
  }
  return new Tensor(out, [1, 3, n, height, width]);
}

/** Geometry of a video tensor: (1, 3, T, H, W) or (3, T, H, W). */
export function videoTensorDims(t: Tensor, what: string): { frames: number; height: number; width: number } {
  const s = t.shape;
  const ok = (s.length === 5 && s[0] === 1 && s[1] === 3) || (s.length === 4 && s[0] === 3);
  if (!ok) throw new ShapeError(`${what}: expected a video tensor of shape (1, 3, T, H, W) or (3, T, H, W), got ${fmtShape(s)}`);
  const o = s.length - 3;
  return { frames: s[o]!, height: s[o + 1]!, width: s[o + 2]! };
}

/**
 * The one [-1, 1] -> uint8 quantiser, for the frames written to video files and for the metrics: clamp to [-1, 1], then
 * round((x + 1) * 127.5), halves up. That is the reference protocol's `(255 * (x * 0.5 + 0.5) + 0.5).clamp(0, 255)
 * .to(uint8)` (truncation after +0.5 rounds halves up like Math.round), computed here in float64 rather than float32.
 * Reads one clip laid out (3, T, H, W) from `x` at `offset`; returns its T frames of HxWx3 interleaved RGB. NaN is
 * not a colour: `nanError(frame, channel, row, column)` builds the error thrown for the first one.
 */
export function quantizeClip(
  x: ArrayLike<number>,
  offset: number,
  frames: number,
  height: number,
  width: number,
  nanError: (frame: number, channel: number, row: number, col: number) => Error,
): Uint8Array {
  const hw = height * width;
  const plane = frames * hw;
  const out = new Uint8Array(3 * plane);
  for (let f = 0; f < frames; f++) {
    const dst = f * hw * 3;
    for (let c = 0; c < 3; c++) {
      const base = offset + c * plane + f * hw;
      for (let p = 0; p < hw; p++) {
        let v = x[base + p]!;
        if (!(v >= -1)) {
          if (Number.isNaN(v)) throw nanError(f, c, Math.floor(p / width), p % width);
          v = -1;
        } else if (v > 1) v = 1;
        out[dst + p * 3 + c] = Math.round((v + 1) * 127.5);
      }
    }
  }
  return out;
}

/**
 * Tensor (1, 3, T, H, W) or (3, T, H, W) in [-1, 1] -> T frames of HxWx3 uint8 (quantizeClip). NaN raises ValueError
 * (a NaN frame is a bug upstream, not a colour).
 */
export function tensorToFrames(t: Tensor): Uint8Array {
  const { frames: n, height, width } = videoTensorDims(t, 'tensorToFrames');
  return quantizeClip(t.readSync(), 0, n, height, width, (f, c, y, x) => new ValueError(`tensorToFrames: NaN at frame ${f}, channel ${c}, pixel (${y}, ${x})`));
}

export function checkDims(width: number, height: number, what: string): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0)
    throw new ValueError(`${what}: width and height must be positive integers, got ${width}x${height}`);
}
