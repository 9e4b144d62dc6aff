/**
 * Writers for the fuzz suite's valid seed files: safetensors (header + data, with the header given as raw JSON text so
 * mutations can produce duplicate keys or invalid JSON), torch.save zips and protocol-2 pickles. Written from scratch
 * here (and in test/torch_zip.ts) so the fuzzer does not depend on the code under test to make its inputs.
 */
import { Pickler, zipLayout, type TorchTensorSpec, type ZipFile, type ZipLayout } from '../torch_zip.js';

// ---------------------------------------------------------------------------------------------------------------
// safetensors

export interface StEntry {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** Header JSON (as an object, offsets filled in) and data section of a safetensors file with these tensors. */
export function safetensorsParts(tensors: Record<string, StEntry>, metadata?: Record<string, string>): { header: Record<string, unknown>; data: Uint8Array } {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let off = 0;
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    chunks.push(t.data);
    off += t.data.length;
  }
  return { header, data: Buffer.concat(chunks) };
}

/** 8-byte little-endian header length, header text (padded with spaces to a multiple of 8), data. */
export function safetensorsBytes(headerText: string | Uint8Array, data: Uint8Array, lengthOverride?: bigint): Buffer {
  let h = typeof headerText === 'string' ? Buffer.from(headerText, 'utf8') : Buffer.from(headerText);
  const pad = (8 - (h.length % 8)) % 8;
  if (pad) h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

// ---------------------------------------------------------------------------------------------------------------
// zip and pickle: the writers of test/torch_zip.ts

export { Pickler, zipLayout as makeZip, type TorchTensorSpec, type ZipFile as ZipEntryIn, type ZipLayout } from '../torch_zip.js';

/** {'ema_model_state_dict': {0.9999: {name: tensor}}, 'step': n} or a flat {name: tensor} dict. */
export function statePickle(tensors: [string, TorchTensorSpec][], layout: 'ema' | 'flat' | 'model', step = 7): Buffer {
  const p = new Pickler().proto();
  const dict = () => {
    p.raw(0x7d).mark();
    for (const [name, t] of tensors) p.str(name).tensorSpec(t);
    p.raw(0x75);
  };
  if (layout === 'flat') dict();
  else {
    p.raw(0x7d).mark();
    if (layout === 'ema') {
      p.str('ema_model_state_dict').raw(0x7d).float(0.9999);
      dict();
      p.raw(0x73);
    } else {
      p.str('model_state_dict');
      dict();
    }
    p.str('step').int(step).raw(0x75);
  }
  return p.raw(0x2e).bytes();
}

/** A torch.save archive: archive/data.pkl, archive/data/<key>, archive/version. */
export function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>, deflate = false): ZipLayout {
  const files: ZipFile[] = [{ name: 'archive/data.pkl', data: pkl, deflate }];
  for (const [k, v] of Object.entries(storages)) files.push({ name: `archive/data/${k}`, data: v, deflate });
  files.push({ name: 'archive/version', data: Buffer.from('3\n') });
  return zipLayout(files);
}
