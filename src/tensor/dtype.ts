/**
 * Element types a tensor may hold in memory. Arithmetic is float32; bf16/f16 weights stay in their stored dtype and are
 * widened inside the kernels that read them; i32 holds token ids.
 */
export type DType = 'f32' | 'bf16' | 'f16' | 'i32';

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32'];

/** Bytes per element. */
export function dtypeBytes(d: DType): number {
  return d === 'bf16' || d === 'f16' ? 2 : 4;
}
