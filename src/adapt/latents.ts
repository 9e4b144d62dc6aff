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
 *                           I2V (`i2v`): img_feat (n, t + C_dc, F, h, w) the mask and DC-AE-V condition latent of the
 *                           clip's first frame, wan_img_feat (n, t + C_wan, F, H/8, W/8) the same for the Wan VAE (the
 *                           phase-1 teacher's extra channels), clip_feat (n, L_img, image_dim) the CLIP features of the
 *                           first frame; all three built by the I2V generation code (src/pipelines/i2v.ts:
 *                           loadConditionImage, i2vCondition, clipFeatures), so training sees what generation feeds
 *   null_context.safetensors null_context (L0, text_dim): the negative prompt's embedding, the text-dropout target
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { readAllFrames } from '../io/video.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import type { ImageEncoder, PromptTokenizer, TextEncoder } from '../pipelines/components.js';
import type { VideoAutoencoder } from '../pipelines/autoencoder.js';
import { latentGeometry, type GenerationPlan } from '../pipelines/generation.js';
import { clipFeatures, i2vCondition, loadConditionImage } from '../pipelines/i2v.js';
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
  /** I2V: store the first frame's condition latents and CLIP features (needs dcae and this image encoder) */
  i2v?: { imageEncoder: ImageEncoder } | null;
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

/**
 * The generation plan of a clip of `frames` frames (n latent frames) for an autoencoder: what i2vCondition needs to
 * build the same conditioning channels as image-to-video generation does for a video of that length.
 */
export function conditionPlan(ae: VideoAutoencoder, frames: number, latentFrames: number, width: number, height: number): GenerationPlan {
  const g = latentGeometry(ae);
  const h = height / g.spatial;
  const w = width / g.spatial;
  return { frames, width, height, latentShape: [1, g.channels, latentFrames, h, w], tokens: latentFrames * h * w, latentScale: g.scale, notes: [] };
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
  if (o.i2v && !o.dcae) throw new ValueError('latents: --i2v needs --dc-ae (the condition latent is a DC-AE-V latent)');
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
    ...(o.i2v ? { i2v: { image_encoder: o.i2v.imageEncoder.fingerprint } } : {}),
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
    const img: Tensor[] = [];
    const wanImg: Tensor[] = [];
    const clipF: Tensor[] = [];
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
        if (o.i2v) {
          // the first frame as image-to-video reads a conditioning image: fitted (cover + center crop) for the
          // autoencoders, the original for CLIP
          const im = await loadConditionImage(join(o.videos, name), o.width, o.height);
          img.push(ops.squeeze(i2vCondition(o.dcae!, im.fitted, conditionPlan(o.dcae!, frames.dc, o.latentFrames, o.width, o.height)), 0));
          if (o.wanVae) wanImg.push(ops.squeeze(i2vCondition(o.wanVae, im.fitted, conditionPlan(o.wanVae, frames.wan, o.latentFrames, o.width, o.height)), 0));
          const enc = o.i2v.imageEncoder;
          clipF.push(ops.squeeze(clipFeatures(enc, im.original, enc.dim), 0));
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
    if (img.length) t.img_feat = ops.contiguous(ops.stack(img, 0));
    if (wanImg.length) t.wan_img_feat = ops.contiguous(ops.stack(wanImg, 0));
    if (clipF.length) t.clip_feat = ops.contiguous(ops.stack(clipF, 0));
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
    i2v: o.i2v ? { image_encoder: o.i2v.imageEncoder.fingerprint, image_dim: o.i2v.imageEncoder.dim } : null,
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
  /** I2V (need.i2v): per sample the DC condition channels img_feat (t + C_dc, F, h, w) and clip_feat (L_img, dim) */
  imgFeat: Tensor[] | null;
  clipFeat: Tensor[] | null;
  /** I2V with need.wan, when the folder has them: the Wan condition channels (t + C_wan, F, H, W) */
  wanImgFeat: Tensor[] | null;
}

const bad = (dir: string, why: string) => new ValueError(`latent folder ${dir}: ${why}`);

/** Whether a latent folder holds I2V data (its manifest says so: `adapt.i2v`, or the first shard has img_feat). */
export function isI2vAdaptSet(dir: string): boolean {
  try {
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { adapt?: { i2v?: unknown }; shards?: string[] };
    if (m.adapt && m.adapt.i2v) return true;
    const f = SafetensorsFile.open(join(dir, m.shards![0]!));
    try {
      return f.has('img_feat');
    } finally {
      f.close();
    }
  } catch {
    return false; // loadAdaptSet reports what is wrong with the folder
  }
}

/** Reads a latent folder; `need` names the parts the caller requires. */
export function loadAdaptSet(dir: string, need: { wan?: boolean; context?: boolean; i2v?: boolean }): AdaptSet {
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
  const img: Tensor[] = [];
  const wimg: Tensor[] = [];
  const clipF: Tensor[] = [];
  // Wan condition channels: read when both the Wan latents and the I2V parts are asked for and the folder has them
  let withWanImg: boolean | null = need.wan && need.i2v ? null : false;
  const rows = (t: Tensor) => Array.from({ length: t.shape[0]! }, (_, i) => ops.contiguous(ops.squeeze(ops.slice(t, 0, i, i + 1), 0)));
  for (const s of m.shards as string[]) {
    const f = SafetensorsFile.open(join(dir, s));
    try {
      const want = ['latents', ...(need.wan ? ['wan_latents'] : []), ...(need.context ? ['context'] : []), ...(need.i2v ? ['img_feat', 'clip_feat'] : [])];
      for (const k of want)
        if (!f.has(k))
          throw bad(dir, `${s} lacks tensor "${k}"${k === 'wan_latents' ? ' (encode with --wan-vae)' : k === 'context' ? ' (give a text encoder or --embeddings)' : k === 'img_feat' || k === 'clip_feat' ? ' (I2V data: dcvg latents --i2v --clip ...)' : ''}`);
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
      if (need.i2v) {
        const y = f.tensor('img_feat');
        const c = f.tensor('clip_feat');
        if (y.ndim !== 5 || y.shape[0] !== n || y.shape[2] !== lat.shape[2] || y.shape[3] !== lat.shape[3] || y.shape[4] !== lat.shape[4])
          throw bad(dir, `${s}: img_feat ${fmtShape(y.shape)} must be (${n}, C_y, ${lat.shape.slice(2).join(', ')}) like latents`);
        if (c.ndim !== 3 || c.shape[0] !== n) throw bad(dir, `${s}: clip_feat ${fmtShape(c.shape)} must be (${n}, L_img, image_dim)`);
        img.push(...rows(y));
        clipF.push(...rows(c));
        if (need.wan) {
          const has = f.has('wan_img_feat');
          if (withWanImg === null) withWanImg = has;
          else if (withWanImg !== has) throw bad(dir, `${s}: wan_img_feat is in some shards and not in others`);
          if (has) wimg.push(...rows(f.tensor('wan_img_feat')));
        }
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
  if (need.i2v) {
    same(img, 'img_feat');
    same(clipF, 'clip_feat');
    if (withWanImg) {
      same(wimg, 'wan_img_feat');
      const [w0, y0] = [wan[0]!, wimg[0]!];
      if (y0.shape.slice(1).some((d, i) => d !== w0.shape[1 + i])) throw bad(dir, `wan_img_feat ${fmtShape(y0.shape)} does not match wan_latents ${fmtShape(w0.shape)} on F, H, W`);
    }
  }
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
  return {
    dir: resolve(dir),
    dc,
    wan: need.wan ? wan : null,
    contexts: need.context ? ctx : null,
    nullContext,
    imgFeat: need.i2v ? img : null,
    clipFeat: need.i2v ? clipF : null,
    wanImgFeat: withWanImg ? wimg : null,
  };
}
