/**
 * Reference dtype conversions (pure TypeScript): bf16 / f16 bit patterns (Uint16Array) to float32 and back, with
 * round-to-nearest-even narrowing. The native backend has the same kernels (native/src/convert.cc: widen, narrowBf16).
 * The caller checks lengths (dst must hold src.length values).
 */

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function bf16ToF32(src: Uint16Array, dst: Float32Array): void {
  const d = new Uint32Array(dst.buffer, dst.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) d[i] = src[i]! << 16;
}

/** Round-to-nearest-even float32 -> bfloat16 (NaN stays NaN). */
export function f32ToBf16(src: Float32Array, dst: Uint16Array): void {
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) {
    const x = s[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) dst[i] = (x >>> 16) | 0x40;
    else dst[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
}

export function f16ToF32(src: Uint16Array, dst: Float32Array): void {
  for (let i = 0; i < src.length; i++) {
    const h = src[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    let v: number;
    if (e === 0) v = m * 2 ** -24;
    else if (e === 31) v = m ? NaN : Infinity;
    else v = (1 + m / 1024) * 2 ** (e - 15);
    dst[i] = sign * v;
  }
}

/** Round-to-nearest-even float32 -> IEEE half. */
export function f32ToF16(src: Float32Array, dst: Uint16Array): void {
  for (let i = 0; i < src.length; i++) {
    f32buf[0] = src[i]!;
    const x = u32buf[0]!;
    const sign = (x >>> 16) & 0x8000;
    const e = (x >>> 23) & 0xff;
    let m = x & 0x7fffff;
    if (e === 0xff) {
      dst[i] = sign | 0x7c00 | (m ? 0x200 : 0);
      continue;
    }
    let he = e - 127 + 15;
    if (he >= 31) {
      dst[i] = sign | 0x7c00;
      continue;
    }
    if (he <= 0) {
      if (he < -10) {
        dst[i] = sign;
        continue;
      }
      m |= 0x800000;
      const shift = 14 - he;
      let hm = m >>> shift;
      const rem = m & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && hm & 1)) hm++;
      dst[i] = sign | hm;
      continue;
    }
    let hm = m >>> 13;
    const rem = m & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && hm & 1)) {
      hm++;
      if (hm === 0x400) {
        hm = 0;
        he++;
        if (he >= 31) {
          dst[i] = sign | 0x7c00;
          continue;
        }
      }
    }
    dst[i] = sign | (he << 10) | hm;
  }
}

