/**
 * Latent datasets for AE-Adapt-V (`dcvg latents`, spec §5.1): every clip of a folder resized and center-cropped to
 * one size, encoded by both autoencoders over the same latent frames (Wan VAE on (n − 1)·4 + 1 frames, DC-AE-V on
 * n·4 frames: 77 and 80 for n = 20), with its caption's text embedding.
 *
 * The folder is a train-dit latent folder (src/train/dit_data.ts, format `dcvg-dit-latents-1`) with more tensors in
 * each shard, so `dcvg train-dit` reads it too:
 *
 *   manifest.json           {"format": "dcvg-dit-latents-1", "shards": [...], "null_context": "null_context.safetensors",
 *                            "adapt": {size, latent_frames, dc_frames, wan_frames, dc_ae, dc_scaling_factor, wan_vae,
 *                            text, text_len}, "clips": [{file, caption, shard}], "skipped": [{file, why}]}
 *   shard-NNNNN.safetensors latents      (n, C_dc, F, H/s_dc, W/s_dc)  DC-AE-V latents × scaling factor (what the DiT sees)
 *                           wan_latents  (n, C_wan, F, H/8, W/8)        Wan VAE latents, normalised ((mu − mean) / std)
 *                           context      (n, L, text_dim)               caption embeddings, zero rows after each caption's
 *                                                                         tokens (umT5's output padded to --text-len)
 *                           (each part only when its model / text source was given); metadata `clips` (JSON list of
 *                           the clip files in the shard) and `settings` (what produced it: resuming skips shards whose
 *                           settings and clip list match)
 *   null_context.safetensors null_context (L0, text_dim): the negative prompt's embedding, the text-dropout target
 *
 * I2V condition latents and CLIP features are not written yet (see docs/adapt.md).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { readAllFrames } from '../io/video.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import type { PromptTokenizer, TextEncoder } from '../pipelines/components.js';
import type { VideoAutoencoder } from '../pipelines/autoencoder.js';
import * as ops from '../tensor/ops.js';
import { Tensor, intTensor, noGrad } from '../tensor/tensor.js';
import { LATENTS_FORMAT } from '../train/dit_data.js';
import { listMedia } from '../train/data.js';

export { LATENTS_FORMAT };

/** Where caption embeddings come from: a text encoder, or files computed elsewhere. */
export interface CaptionEmbedder {
  /** one line for the manifest */
  readonly describe: string;
  readonly dim: number;
  /** the (L_b, dim) embedding of one clip's caption (L_b real tokens) */
  embed(caption: string, clipFile: string): Tensor;
  /** the null embedding (negative prompt), or null when there is none */
  nullEmbedding(): Tensor | null;
}

/** Captions through a tokenizer and a text encoder (umT5); the null embedding is the negative prompt's. */
export function encoderEmbedder(tok: PromptTokenizer, enc: TextEncoder, textLen: number, negativePrompt: string): CaptionEmbedder {
  const run = (text: string): Tensor => {
    const t = tok.tokenize(text, textLen);
    const ids = intTensor(Int32Array.from(t.inputIds), [1, textLen]);
    const mask = intTensor(Int32Array.from(t.attentionMask), [1, textLen]);
    return noGrad(() => enc.encode(ids, mask)[0]!);
  };
  return {
    describe: `text encoder ${enc.fingerprint}, tokenizer ${tok.fingerprint}, text_len ${textLen}, negative prompt ${JSON.stringify(negativePrompt)}`,
    dim: enc.dim,
    embed: (caption) => run(caption),
    nullEmbedding: () => run(negativePrompt),
  };
}

/**
 * Precomputed embeddings: `<dir>/<clip stem>.safetensors` holding one (L, dim) tensor (key `context`, or its only
 * tensor) per clip; `<dir>/null.safetensors` the null embedding (optional).
 */
export function folderEmbedder(dir: string): CaptionEmbedder {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ValueError(`--embeddings ${dir} is not a folder`);
  const read = (path: string): Tensor => {
    const f = SafetensorsFile.open(path);
    try {
      const keys = f.keys();
      const k = f.has('context') ? 'context' : keys.length === 1 ? keys[0]! : null;
      if (!k) throw new ValueError(`${path}: expected a tensor "context" (or a single tensor), found ${keys.join(', ')}`);
      const t = f.tensor(k);
      if (t.ndim !== 2) throw new ShapeError(`${path}: ${k} must be (L, dim), got ${fmtShape(t.shape)}`);
      return t;
    } finally {
      f.close();
    }
  };
  let dim = -1;
  const files = readdirSync(dir).filter((n) => n.endsWith('.safetensors'));
  if (!files.length) throw new ValueError(`--embeddings ${dir} holds no .safetensors files`);
  dim = read(join(dir, files[0]!)).shape[1]!;
  return {
    describe: `precomputed embeddings from ${resolve(dir)}`,
    dim,
    embed: (_caption, clipFile) => {
      const p = join(dir, `${basename(clipFile, extname(clipFile))}.safetensors`);
      if (!existsSync(p)) throw new ValueError(`--embeddings: no ${p} for clip ${clipFile}`);
      const t = read(p);
      if (t.shape[1] !== dim) throw new ShapeError(`${p}: embedding width ${t.shape[1]}, the others' is ${dim}`);
      return t;
    },
    nullEmbedding: () => (existsSync(join(dir, 'null.safetensors')) ? read(join(dir, 'null.safetensors')) : null),
  };
}

/**
 * The caption of a clip: a sidecar `<stem>.txt` (its text) or `<stem>.json` (field extended_prompt, prompt or caption,
 * as the reference's webdataset), else the folder's `captions.tsv` (file<TAB>caption, header allowed); '' if none.
 */
export function clipCaption(dir: string, file: string, tsv: Map<string, string> | null): string {
  const stem = join(dir, basename(file, extname(file)));
  if (existsSync(`${stem}.txt`)) return readFileSync(`${stem}.txt`, 'utf8').trim();
  if (existsSync(`${stem}.json`)) {
    let j: unknown;
    try {
      j = JSON.parse(readFileSync(`${stem}.json`, 'utf8'));
    } catch (e) {
      throw new ValueError(`${stem}.json is not valid JSON (${(e as Error).message})`);
    }
    const r = (j ?? {}) as Record<string, unknown>;
    for (const k of ['extended_prompt', 'prompt', 'caption']) if (typeof r[k] === 'string' && r[k]) return r[k] as string;
    throw new ValueError(`${stem}.json has no extended_prompt, prompt or caption string`);
  }
  return tsv?.get(file) ?? '';
}

export function readCaptionsTsv(dir: string): Map<string, string> | null {
  const p = join(dir, 'captions.tsv');
  return existsSync(p) ? readCaptionsTsvFile(p) : null;
}

/** A captions file of the captions.tsv form (file<TAB>caption per line, header allowed), by file name. */
export function readCaptionsTsvFile(p: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync(p, 'utf8').split('\n')) {
    const i = line.indexOf('\t');
    if (i > 0) m.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return m;
}

export interface BuildAdaptLatentsOptions {
  videos: string;
  out: string;
  width: number;
  height: number;
  /** latent frames per clip (default 20: 80 DC-AE-V frames, 77 Wan VAE frames) */
  latentFrames: number;
  dcae: VideoAutoencoder | null;
  wanVae: VideoAutoencoder | null;
  text: CaptionEmbedder | null;
  /** context rows per sample (captions are zero-padded to it; longer ones refused) */
  textLen: number;
  perShard: number;
  /** only the first N clips (sorted by name) */
  count?: number;
  onClip?: (done: number, total: number, file: string) => void;
  onMessage?: (msg: string) => void;
}

export interface BuiltLatents {
  samples: number;
  shards: number;
  reused: number;
  skipped: { file: string; why: string }[];
}

/** Frames each autoencoder reads for `n` latent frames: n·t_dc for DC-AE-V, (n − 1)·t_wan + 1 for the Wan VAE. */
export function adaptFrameCounts(n: number, dcTemporal: number, wanTemporal: number): { dc: number; wan: number } {
  return { dc: n * dcTemporal, wan: (n - 1) * wanTemporal + 1 };
}

/** Encodes a folder of clips into an AE-Adapt-V latent folder (resumable: finished shards are kept). */
export async function buildAdaptLatents(o: BuildAdaptLatentsOptions): Promise<BuiltLatents> {
  if (!o.dcae && !o.wanVae) throw new ValueError('latents: give --dc-ae and/or --wan-vae (nothing to encode)');
  for (const [k, v] of [
    ['width', o.width],
    ['height', o.height],
    ['latentFrames', o.latentFrames],
    ['textLen', o.textLen],
    ['perShard', o.perShard],
  ] as const)
    if (!Number.isSafeInteger(v) || v < 1) throw new ValueError(`latents: ${k} must be a positive integer, got ${v}`);
  if (o.dcae && (o.width % o.dcae.spatial || o.height % o.dcae.spatial))
    throw new ValueError(`latents: --size ${o.width}x${o.height} must be a multiple of DC-AE-V's spatial factor ${o.dcae.spatial}`);
  // the teacher patch embedder (1x2x2) needs an even Wan latent grid
  if (o.wanVae && (o.width % (2 * o.wanVae.spatial) || o.height % (2 * o.wanVae.spatial)))
    throw new ValueError(`latents: --size ${o.width}x${o.height} must be a multiple of ${2 * o.wanVae.spatial} (Wan VAE factor ${o.wanVae.spatial} times the 1x2x2 patch)`);
  const frames = adaptFrameCounts(o.latentFrames, o.dcae?.temporal ?? 4, o.wanVae?.temporal ?? 4);
  const readFrames = o.dcae ? frames.dc : frames.wan;
  if (o.dcae && o.dcae.latentFrames(frames.dc) !== o.latentFrames)
    throw new ValueError(`latents: DC-AE-V gives ${o.dcae.latentFrames(frames.dc)} latent frames for ${frames.dc} frames, not ${o.latentFrames} (its chunk must divide ${frames.dc})`);
  if (o.wanVae) o.wanVae.encodedFrames(frames.wan); // throws for a count it refuses
  const { videos } = listMedia(o.videos);
  const clips = videos.slice(0, o.count ?? Infinity);
  if (!clips.length) throw new ValueError(`latents: no video clips in ${o.videos}`);
  const tsv = readCaptionsTsv(o.videos);
  const captions = clips.map((c) => clipCaption(o.videos, c, tsv));
  mkdirSync(o.out, { recursive: true });
  const settings = JSON.stringify({
    size: [o.width, o.height],
    latent_frames: o.latentFrames,
    dc_ae: o.dcae ? o.dcae.latentMetadata() : null,
    wan_vae: o.wanVae ? o.wanVae.latentMetadata() : null,
    text: o.text?.describe ?? null,
    text_len: o.textLen,
  });
  const shards: string[] = [];
  const clipRows: { file: string; caption: string; shard: string }[] = [];
  const skipped: { file: string; why: string }[] = [];
  let reused = 0;
  let done = 0;
  let samples = 0;
  for (let s0 = 0; s0 < clips.length; s0 += o.perShard) {
    const names = clips.slice(s0, s0 + o.perShard);
    const shard = `shard-${String(shards.length).padStart(5, '0')}.safetensors`;
    const path = join(o.out, shard);
    // resume: a shard written by the same settings for the same clips is kept as it is
    if (existsSync(path)) {
      const f = SafetensorsFile.open(path);
      try {
        const m = f.metadata;
        if (m.settings === settings && m.candidates === JSON.stringify(names)) {
          const kept = JSON.parse(m.clips ?? '[]') as string[];
          const why = JSON.parse(m.skipped ?? '[]') as { file: string; why: string }[];
          shards.push(shard);
          for (const c of kept) clipRows.push({ file: c, caption: captions[clips.indexOf(c)]!, shard });
          skipped.push(...why);
          samples += kept.length;
          reused++;
          done += names.length;
          o.onClip?.(done, clips.length, names[names.length - 1]!);
          continue;
        }
      } finally {
        f.close();
      }
      o.onMessage?.(`${shard} was written with other settings or clips: encoding it again`);
    }
    const dc: Tensor[] = [];
    const wan: Tensor[] = [];
    const ctx: Tensor[] = [];
    const kept: string[] = [];
    const why: { file: string; why: string }[] = [];
    for (const name of names) {
      const x = await readAllFrames(join(o.videos, name), { resize: { width: o.width, height: o.height, mode: 'cover' }, maxFrames: readFrames });
      const T = x.shape[2]!;
      if (T < readFrames) {
        why.push({ file: name, why: `${T} frames, fewer than the ${readFrames} needed` });
        o.onMessage?.(`skipping ${name}: ${T} frames, fewer than ${readFrames}`);
      } else {
        if (o.dcae) {
          const z = noGrad(() => o.dcae!.encodeClip(x).latent);
          const sf = Number(o.dcae.latentMetadata().scaling_factor) || 1;
          dc.push(sf === 1 ? z : ops.affine(z, sf, 0));
        }
        if (o.wanVae) {
          const xw = ops.contiguous(ops.slice(x, 2, 0, frames.wan));
          const z = noGrad(() => o.wanVae!.encodeClip(xw).latent);
          if (z.shape[2] !== o.latentFrames) throw new ShapeError(`latents: the Wan VAE gave ${z.shape[2]} latent frames for ${frames.wan} frames, not ${o.latentFrames}`);
          wan.push(z);
        }
        if (o.text) {
          const e = o.text.embed(captions[clips.indexOf(name)]!, name);
          if (e.shape[0]! > o.textLen) throw new ValueError(`latents: the caption of ${name} has ${e.shape[0]} tokens, more than --text-len ${o.textLen}`);
          ctx.push(e.shape[0] === o.textLen ? e : ops.pad(e, [0, 0, 0, o.textLen - e.shape[0]!]));
        }
        kept.push(name);
      }
      done++;
      o.onClip?.(done, clips.length, name);
    }
    skipped.push(...why);
    if (!kept.length) continue; // nothing to store; the next run tries these clips again
    const t: Record<string, WritableTensor> = {};
    if (dc.length) t.latents = ops.contiguous(ops.cat(dc, 0));
    if (wan.length) t.wan_latents = ops.contiguous(ops.cat(wan, 0));
    if (ctx.length) t.context = ops.contiguous(ops.stack(ctx, 0));
    saveSafetensors(path, t, { metadata: { settings, candidates: JSON.stringify(names), clips: JSON.stringify(kept), skipped: JSON.stringify(why) } });
    shards.push(shard);
    for (const c of kept) clipRows.push({ file: c, caption: captions[clips.indexOf(c)]!, shard });
    samples += kept.length;
  }
  if (!samples) throw new ValueError(`latents: none of the ${clips.length} clips has ${readFrames} frames`);
  const manifest: Record<string, unknown> = { format: LATENTS_FORMAT, shards };
  const nul = o.text?.nullEmbedding() ?? null;
  if (nul) {
    if (nul.shape[0]! > o.textLen) throw new ValueError(`latents: the null embedding has ${nul.shape[0]} tokens, more than --text-len ${o.textLen}`);
    saveSafetensors(join(o.out, 'null_context.safetensors'), { null_context: ops.contiguous(nul) });
    manifest.null_context = 'null_context.safetensors';
  }
  manifest.adapt = {
    size: [o.width, o.height],
    latent_frames: o.latentFrames,
    dc_frames: o.dcae ? frames.dc : null,
    wan_frames: o.wanVae ? frames.wan : null,
    dc_ae: o.dcae?.name ?? null,
    dc_scaling_factor: o.dcae ? Number(o.dcae.latentMetadata().scaling_factor) || 1 : null,
    wan_vae: o.wanVae?.name ?? null,
    text: o.text?.describe ?? null,
    text_len: o.textLen,
  };
  manifest.source = resolve(o.videos);
  manifest.clips = clipRows;
  manifest.skipped = skipped;
  writeFileAtomic(join(o.out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return { samples, shards: shards.length, reused, skipped };
}

/** An AE-Adapt-V latent folder in memory: per sample the DC latent, and where present the Wan latent and the context. */
export interface AdaptSet {
  dir: string;
  dc: Tensor[];
  wan: Tensor[] | null;
  contexts: Tensor[] | null;
  nullContext: Tensor | null;
}

const bad = (dir: string, why: string) => new ValueError(`latent folder ${dir}: ${why}`);

/** Reads a latent folder; `need` names the parts the caller requires. */
export function loadAdaptSet(dir: string, need: { wan?: boolean; context?: boolean }): AdaptSet {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ValueError(`latent folder ${dir} is not a folder`);
  const mpath = join(dir, 'manifest.json');
  if (!existsSync(mpath)) throw bad(dir, 'no manifest.json (write one with dcvg latents)');
  let m: { format?: unknown; shards?: unknown; null_context?: unknown };
  try {
    m = JSON.parse(readFileSync(mpath, 'utf8'));
  } catch (e) {
    throw bad(dir, `manifest.json is not valid JSON (${(e as Error).message})`);
  }
  if (m?.format !== LATENTS_FORMAT) throw bad(dir, `manifest.json format must be "${LATENTS_FORMAT}", got ${JSON.stringify(m?.format)}`);
  if (!Array.isArray(m.shards) || !m.shards.length || !m.shards.every((s) => typeof s === 'string' && s)) throw bad(dir, '"shards" must be a non-empty list of file names');
  const dc: Tensor[] = [];
  const wan: Tensor[] = [];
  const ctx: Tensor[] = [];
  const rows = (t: Tensor) => Array.from({ length: t.shape[0]! }, (_, i) => ops.contiguous(ops.squeeze(ops.slice(t, 0, i, i + 1), 0)));
  for (const s of m.shards as string[]) {
    const f = SafetensorsFile.open(join(dir, s));
    try {
      const want = ['latents', ...(need.wan ? ['wan_latents'] : []), ...(need.context ? ['context'] : [])];
      for (const k of want) if (!f.has(k)) throw bad(dir, `${s} lacks tensor "${k}"${k === 'wan_latents' ? ' (encode with --wan-vae)' : k === 'context' ? ' (give a text encoder or --embeddings)' : ''}`);
      const lat = f.tensor('latents');
      if (lat.ndim !== 5) throw bad(dir, `${s}: latents must be (n, C, F, H, W), got ${fmtShape(lat.shape)}`);
      const n = lat.shape[0]!;
      dc.push(...rows(lat));
      if (need.wan) {
        const w = f.tensor('wan_latents');
        if (w.ndim !== 5 || w.shape[0] !== n) throw bad(dir, `${s}: wan_latents ${fmtShape(w.shape)} must be (${n}, C, F, H, W)`);
        wan.push(...rows(w));
      }
      if (need.context) {
        const c = f.tensor('context');
        if (c.ndim !== 3 || c.shape[0] !== n) throw bad(dir, `${s}: context ${fmtShape(c.shape)} must be (${n}, L, text_dim)`);
        ctx.push(...rows(c));
      }
    } finally {
      f.close();
    }
  }
  const same = (ts: Tensor[], what: string) => {
    for (const t of ts) if (t.ndim !== ts[0]!.ndim || t.shape.some((d, i) => d !== ts[0]!.shape[i])) throw bad(dir, `${what} ${fmtShape(t.shape)} differ from the first sample's ${fmtShape(ts[0]!.shape)}`);
  };
  same(dc, 'latents');
  if (need.wan) same(wan, 'wan_latents');
  if (need.context) same(ctx, 'context');
  let nullContext: Tensor | null = null;
  if (typeof m.null_context === 'string') {
    const f = SafetensorsFile.open(join(dir, m.null_context));
    try {
      if (!f.has('null_context')) throw bad(dir, `${m.null_context} lacks tensor "null_context"`);
      nullContext = f.tensor('null_context');
    } finally {
      f.close();
    }
  }
  return { dir: resolve(dir), dc, wan: need.wan ? wan : null, contexts: need.context ? ctx : null, nullContext };
}
