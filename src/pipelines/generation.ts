/**
 * What text-to-video (`t2v.ts`) and image-to-video (`i2v.ts`) share: the components they drive, the geometry of a
 * request, prompt encoding (with the on-disk cache, and the text encoder freed before the DiT runs), sampling, and the
 * streaming decode into an atomically written video file.
 *
 * The order of a run keeps one big model in memory at a time:
 *   tokenizer -> text encoder (loaded only for prompts not in the cache; dropped) -> [i2v: CLIP (dropped), autoencoder
 *   encode of the conditioning clip] -> DiT (sampling; dropped) -> autoencoder decode, chunk by chunk, into the file.
 *
 * Latent spaces (spec §1.8, §4): DC-AE-V latents go to the DiT multiplied by the AE's scaling factor (0.7241 for c32)
 * and come back divided by it; the Wan VAE's latents are already normalised ((mu - mean) / std). Frame counts
 * (spec §2.4, §4.6): DC-AE-V floors to a multiple of its temporal factor (81 -> 80, 20 latents); the Wan VAE to
 * 1 + 4k (81, 21 latents). Height and width must be multiples of spatial factor x patch (32 x 1 for DC-AE-V f32 with
 * the DC DiT, 8 x 2 for the Wan VAE with the base DiT).
 */
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { openVideoWriter } from '../io/video.js';
import type { SolverKind } from '../diffusion/unipc.js';
import type { WanConfig } from '../models/wan/config.js';
import type { WanConditioning, WanModel } from '../models/wan/model.js';
import { generateLatents } from '../models/wan/pipeline.js';
import * as ops from '../tensor/ops.js';
import { intTensor, noGrad, type Tensor } from '../tensor/tensor.js';
import { findNonFinite } from '../tensor/inplace.js';
import type { VideoAutoencoder } from './autoencoder.js';
import type { ImageEncoder, PromptTokenizer, TextEncoder } from './components.js';
import { PromptEmbeddingCache, promptCacheKey } from '../models/umt5/cache.js';

/**
 * The models of a pipeline, each loaded only when the run reaches it (and dropped when it is done with it), so that a
 * 14B DiT never shares memory with the umT5-XXL encoder.
 */
export interface GenerationModels {
  /** a short name for messages and the JSON summary (e.g. the model folder) */
  name?: string;
  /** the DiT's config, known before its weights are read (text_len, channels, patch, i2v or t2v) */
  ditConfig: WanConfig;
  /** the autoencoder's geometry, known before its weights are read */
  aeGeometry: LatentGeometry;
  tokenizer(): PromptTokenizer | Promise<PromptTokenizer>;
  /** called only when some prompt is not in the embedding cache */
  textEncoder(): TextEncoder | Promise<TextEncoder>;
  /** identity of the text encoder's weights, known without loading them (the cache key); no cache without it */
  textEncoderId?: string;
  /** the text encoder's output width, known without loading it (checked against the DiT's text_dim) */
  textDim?: number;
  /** the CFG null embedding ([562] checkpoints carry one, (512, 4096)), or null; used when no negative prompt is given */
  nullEmbedding?(): Tensor | null;
  dit(): WanModel | Promise<WanModel>;
  autoencoder(): VideoAutoencoder | Promise<VideoAutoencoder>;
  /** i2v: the CLIP visual tower */
  imageEncoder?(): ImageEncoder | Promise<ImageEncoder>;
}

export interface GenerationOptions {
  prompt: string;
  /**
   * The negative prompt of classifier-free guidance. undefined / null: the checkpoint's null embedding when it has
   * one, else the empty prompt.
   */
  negativePrompt?: string | null;
  /** requested frames (floored to the autoencoder's rule; see `planGeneration`) */
  frames: number;
  width: number;
  height: number;
  steps: number;
  guidance: number;
  shift: number;
  seed: number;
  sampler: SolverKind;
  /** frame rate of the written video (16 for the released models) */
  fps?: number;
  /** prompt-embedding cache folder; null or undefined: no cache */
  cacheDir?: string | null;
  /** mp4 quality (x264 CRF) */
  crf?: number;
  /** 'text' | 'image' | 'condition' | 'denoise' | 'decode', when each stage starts */
  onStage?: (stage: GenerationStage) => void;
  /** after every denoising step */
  onStep?: (step: number, total: number) => void;
  /** after every decoded chunk, with the frames written so far */
  onFrames?: (framesWritten: number, total: number) => void;
}

export type GenerationStage = 'text' | 'image' | 'condition' | 'denoise' | 'decode';

export interface GenerationPlan {
  /** frames the video will have */
  frames: number;
  width: number;
  height: number;
  /** latent shape (1, C, F, h, w) the DiT samples */
  latentShape: [number, number, number, number, number];
  /** DiT tokens per sample */
  tokens: number;
  /** multiplies an autoencoder latent into the DiT's space (DC-AE-V: scaling factor; Wan VAE: 1) */
  latentScale: number;
  /** notes for the user (frames floored, ...) */
  notes: string[];
}

export interface GenerationResult {
  output: string;
  mode: 't2v' | 'i2v';
  model: string;
  autoencoder: string;
  frames: number;
  width: number;
  height: number;
  fps: number;
  steps: number;
  guidance: number;
  shift: number;
  seed: number;
  sampler: SolverKind;
  latent_shape: number[];
  dit_tokens: number;
  negative: 'prompt' | 'null-embedding';
  /** prompts embedded by the text encoder / taken from the cache (the encoder was not loaded when encoded is 0) */
  prompts_encoded: number;
  prompts_cached: number;
  notes: string[];
  seconds: { text: number; image: number; condition: number; denoise: number; decode: number; total: number };
}

const now = () => performance.now();
const secs = (t0: number) => +((now() - t0) / 1000).toFixed(3);

/** Limits of a request (far beyond what any machine runs; they keep a typo from allocating terabytes). */
const MAX_SIDE = 8192;
const MAX_FRAMES = 4096;
const MAX_STEPS = 1000;

function posInt(v: number, what: string, max: number): void {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new ValueError(`${what} must be an integer in 1..${max}, got ${v}`);
}

/** Checks the numeric options (before anything is loaded). */
export function checkGenerationOptions(o: GenerationOptions): void {
  if (typeof o.prompt !== 'string' || o.prompt.trim() === '') throw new ValueError('the prompt is empty');
  posInt(o.frames, 'frames', MAX_FRAMES);
  posInt(o.width, 'width', MAX_SIDE);
  posInt(o.height, 'height', MAX_SIDE);
  posInt(o.steps, 'steps', MAX_STEPS);
  if (!Number.isFinite(o.guidance) || o.guidance < 0 || o.guidance > 100) throw new ValueError(`guidance must be a number in [0, 100], got ${o.guidance}`);
  if (!Number.isFinite(o.shift) || o.shift <= 0 || o.shift > 1000) throw new ValueError(`shift must be a number in (0, 1000], got ${o.shift}`);
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 2 ** 32 - 1) throw new ValueError(`seed must be an integer in 0..${2 ** 32 - 1}, got ${o.seed}`);
  if (o.sampler !== 'unipc' && o.sampler !== 'euler') throw new ValueError(`sampler must be unipc or euler, got ${String(o.sampler)}`);
  if (o.fps !== undefined && !(Number.isFinite(o.fps) && o.fps > 0 && o.fps <= 1000)) throw new ValueError(`fps must be a number in (0, 1000], got ${o.fps}`);
}

/** The autoencoder geometry a DiT must match, from the autoencoder alone. */
export interface LatentGeometry {
  family: 'dc-ae-v' | 'wan-vae';
  name: string;
  channels: number;
  spatial: number;
  temporal: number;
  /** multiplies an autoencoder latent into the DiT's space */
  scale: number;
}

export function latentGeometry(ae: VideoAutoencoder): LatentGeometry {
  let scale = 1;
  if (ae.family === 'dc-ae-v') {
    const sf = (ae.model as { config: { scalingFactor?: number | null } }).config.scalingFactor;
    scale = typeof sf === 'number' && sf > 0 ? sf : 1;
  }
  return { family: ae.family, name: ae.name, channels: ae.latentChannels, spatial: ae.spatial, temporal: ae.temporal, scale };
}

/** Frames floored to what the autoencoder generates: a multiple of t (DC-AE-V) or 1 + t k (Wan VAE). */
export function generatedFrames(g: Pick<LatentGeometry, 'family' | 'temporal'>, requested: number): { frames: number; latentFrames: number } {
  const t = g.temporal;
  if (g.family === 'wan-vae') {
    const k = Math.floor((requested - 1) / t);
    return { frames: 1 + t * k, latentFrames: 1 + k };
  }
  const n = Math.floor(requested / t);
  if (n < 1) throw new ValueError(`frames ${requested}: the autoencoder generates multiples of ${t} frames; ask for at least ${t}`);
  return { frames: n * t, latentFrames: n };
}

/**
 * Checks that the DiT, the autoencoder, the request (and, given, the text / image encoder widths) fit together, and
 * returns the latent geometry. Every mismatch is a ValueError naming both sides.
 */
export function planGeneration(
  dit: WanConfig,
  g: LatentGeometry,
  o: Pick<GenerationOptions, 'frames' | 'width' | 'height'>,
  mode: 't2v' | 'i2v',
  where: { dit?: string; ae?: string } = {},
): GenerationPlan {
  const ditName = where.dit ?? `DiT "${dit.name}"`;
  const aeName = where.ae ?? `autoencoder "${g.name}"`;
  if (mode === 'i2v' && dit.model_type !== 'i2v') throw new ValueError(`${ditName} is a text-to-video model (model_type t2v); image-to-video needs an i2v DiT`);
  if (mode === 't2v' && dit.model_type === 'i2v') throw new ValueError(`${ditName} is an image-to-video model; pass a conditioning image (--image)`);
  if (dit.out_dim !== g.channels)
    throw new ValueError(`${ditName} predicts ${dit.out_dim} latent channels but ${aeName} has ${g.channels}; they are not a pair (DC-VideoGen DiTs go with DC-AE-V, Wan DiTs with the Wan VAE)`);
  const wantIn = mode === 'i2v' ? 2 * g.channels + g.temporal : g.channels;
  if (dit.in_dim !== wantIn)
    throw new ValueError(
      mode === 'i2v'
        ? `${ditName} takes ${dit.in_dim} input channels; image-to-video on ${aeName} needs ${wantIn} (${g.channels} noisy + ${g.temporal} mask + ${g.channels} condition)`
        : `${ditName} takes ${dit.in_dim} input channels; ${aeName} has ${g.channels} latent channels`,
    );
  const [pt, ph, pw] = dit.patch_size;
  const mh = g.spatial * ph;
  const mw = g.spatial * pw;
  if (o.height % mh || o.width % mw)
    throw new ValueError(
      `size ${o.width}x${o.height} (width x height): both sides must be multiples of ${mw === mh ? mh : `${mw} (width) and ${mh} (height)`} ` +
        `(the autoencoder's spatial factor ${g.spatial} x the DiT's patch ${ph === pw ? ph : `${ph}x${pw}`}); e.g. ${Math.max(mw, Math.round(o.width / mw) * mw)}x${Math.max(mh, Math.round(o.height / mh) * mh)}`,
    );
  const { frames, latentFrames } = generatedFrames(g, o.frames);
  if (latentFrames % pt) throw new ValueError(`frames ${o.frames}: ${latentFrames} latent frames are not a multiple of the DiT's temporal patch ${pt}`);
  const notes: string[] = [];
  if (frames !== o.frames)
    notes.push(`${o.frames} frames requested; the ${g.family === 'wan-vae' ? 'Wan VAE generates 1 + 4k' : `autoencoder generates multiples of ${g.temporal}`} frames, so ${frames} are made`);
  const h = o.height / g.spatial;
  const w = o.width / g.spatial;
  return {
    frames,
    width: o.width,
    height: o.height,
    latentShape: [1, g.channels, latentFrames, h, w],
    tokens: (latentFrames / pt) * (h / ph) * (w / pw),
    latentScale: g.scale,
    notes,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// text

export interface EncodedPrompts {
  /** one (L_real, text_dim) embedding per prompt given (null for prompts not asked for) */
  embeddings: Tensor[];
  encoded: number;
  cached: number;
}

/**
 * Embeds prompts: tokenised to textLen, taken from the cache when there, else run through the text encoder, which is
 * loaded once for all the missing prompts and dropped (its reference released) before this returns.
 */
export async function encodePrompts(
  models: Pick<GenerationModels, 'tokenizer' | 'textEncoder' | 'textEncoderId'>,
  prompts: readonly string[],
  textLen: number,
  textDim: number,
  cacheDir?: string | null,
): Promise<EncodedPrompts> {
  const tok = await models.tokenizer();
  const toks = prompts.map((p) => tok.tokenize(p, textLen));
  const real = toks.map((t, i) => {
    const n = t.attentionMask.reduce((a, b) => a + b, 0);
    if (t.inputIds.length !== textLen || t.attentionMask.length !== textLen || n < 1)
      throw new ShapeError(`tokenizer returned ${t.inputIds.length} ids / ${t.attentionMask.length} mask values (${n} real) for prompt ${i}; expected ${textLen} with at least one real token`);
    return t.inputIds.slice(0, n);
  });
  // the umT5 prompt-embedding cache (src/models/umt5/cache.ts): keyed by tokenizer, weights, text_len and text
  const cache = cacheDir && models.textEncoderId ? new PromptEmbeddingCache(cacheDir) : null;
  const keys = prompts.map((text) => promptCacheKey({ tokenizer: tok.fingerprint, weights: models.textEncoderId ?? '', textLen, text }));
  const out: (Tensor | null)[] = real.map((ids, i) => (cache ? cache.get(keys[i]!, { length: ids.length, dim: textDim }) : null));
  const missing = out.flatMap((t, i) => (t ? [] : [i]));
  let encoded = 0;
  if (missing.length) {
    let enc: TextEncoder | null = await models.textEncoder();
    if (enc.dim !== textDim) throw new ValueError(`the text encoder's output width is ${enc.dim}, but the DiT's text_dim is ${textDim}`);
    const L = Math.max(...missing.map((i) => real[i]!.length));
    // real tokens first, padded with the pad id: the encoder computes only the real ones
    const ids = new Int32Array(missing.length * L).fill(tok.padId);
    const mask = new Int32Array(missing.length * L);
    missing.forEach((i, b) => {
      ids.set(real[i]!, b * L);
      mask.fill(1, b * L, b * L + real[i]!.length);
    });
    const hs = noGrad(() => enc!.encode(intTensor(ids, [missing.length, L]), intTensor(mask, [missing.length, L])));
    enc = null; // the encoder is released here, before any DiT weight is read
    if (hs.length !== missing.length) throw new ShapeError(`the text encoder returned ${hs.length} embeddings for ${missing.length} prompts`);
    hs.forEach((h, b) => {
      const i = missing[b]!;
      if (h.ndim !== 2 || h.shape[0] !== real[i]!.length || h.shape[1] !== textDim)
        throw new ShapeError(`the text encoder returned ${fmtShape(h.shape)} for a prompt of ${real[i]!.length} tokens; expected (${real[i]!.length}, ${textDim})`);
      const bad = findNonFinite(h);
      if (bad) throw new ValueError(`the text encoder produced ${bad.value} for prompt ${i}; its weights are likely corrupt`);
      out[i] = h;
      cache?.put(keys[i]!, h, { text_len: String(textLen), tokenizer: tok.fingerprint, weights: models.textEncoderId ?? '' });
    });
    encoded = missing.length;
  }
  return { embeddings: out as Tensor[], encoded, cached: prompts.length - encoded };
}

// ---------------------------------------------------------------------------------------------------------------
// sampling and decoding

/** DiT sampling from seeded noise; the DiT reference is not kept. Returns latents in the DiT's (scaled) space. */
export function denoise(
  dit: WanModel,
  plan: GenerationPlan,
  context: Tensor,
  nullContext: Tensor | null,
  o: Pick<GenerationOptions, 'steps' | 'guidance' | 'shift' | 'seed' | 'sampler' | 'onStep'> & { cfgBatch?: boolean | 'auto' },
  cond?: WanConditioning,
): Tensor {
  const z = generateLatents(dit, {
    shape: plan.latentShape,
    context: [context],
    nullContext: nullContext ? [nullContext] : undefined,
    guidance: o.guidance,
    steps: o.steps,
    shift: o.shift,
    seed: o.seed,
    solver: o.sampler,
    cond,
    onStep: o.onStep,
    cfgBatch: o.cfgBatch,
  });
  const bad = findNonFinite(z);
  if (bad) throw new ValueError(`sampling produced ${bad.value} in the latents (flat index ${bad.index}); the DiT weights are likely broken (nothing written)`);
  return z;
}

/**
 * Decodes DiT latents (scaled space) into an open video writer, one autoencoder chunk at a time (the whole clip of
 * pixels is never in memory). The caller closes the writer (atomic rename) or aborts it.
 */
export async function decodeInto(
  ae: VideoAutoencoder,
  latents: Tensor,
  plan: GenerationPlan,
  writer: { write(frames: Tensor): Promise<void> },
  onFrames?: (done: number, total: number) => void,
): Promise<number> {
  let frames = 0;
  const z = plan.latentScale === 1 ? latents : ops.mul(latents, 1 / plan.latentScale);
  const dec = ae.decodeStream({ numFrames: plan.frames, height: plan.height, width: plan.width });
  const emit = async (y: Tensor | null) => {
    if (!y) return;
    frames += y.shape[2]!;
    await writer.write(y);
    onFrames?.(frames, plan.frames);
  };
  const lc = ae.readFrames !== null ? Math.max(1, ae.readFrames / ae.temporal) : z.shape[2]!;
  for (let i = 0; i < z.shape[2]!; i += lc) await emit(noGrad(() => dec.push(ops.contiguous(ops.slice(z, 2, i, Math.min(z.shape[2]!, i + lc))))));
  await emit(noGrad(() => dec.finish()));
  if (frames !== plan.frames) throw new ShapeError(`the autoencoder decoded ${frames} frames, expected ${plan.frames}`);
  return frames;
}

// ---------------------------------------------------------------------------------------------------------------
// the whole run

/** What image-to-video adds: its conditioning, computed once the text encoder is gone and before the DiT loads. */
export interface Conditioner {
  /** y (1, mask + latent channels, F, h, w) and the CLIP features, given the plan and the loaded autoencoder */
  condition(plan: GenerationPlan, ae: VideoAutoencoder, stage: (s: GenerationStage) => void): Promise<WanConditioning & { imageSeconds: number }>;
}

/**
 * One generation, t2v (conditioner null) or i2v. The output video is opened first (so a bad path fails before any
 * model loads) and written atomically: on any error nothing is left at `output`.
 */
export async function runGeneration(
  models: GenerationModels,
  o: GenerationOptions,
  output: string,
  conditioner: Conditioner | null,
): Promise<GenerationResult> {
  checkGenerationOptions(o);
  const t0 = now();
  const mode = conditioner ? 'i2v' : 't2v';
  const cfg = models.ditConfig;
  if (models.textDim !== undefined && models.textDim !== cfg.text_dim)
    throw new ValueError(`the text encoder's output width is ${models.textDim}, but the DiT's text_dim is ${cfg.text_dim}; they are not a pair`);
  const plan = planGeneration(cfg, models.aeGeometry, o, mode);
  const fps = o.fps ?? 16;
  const stage = (s: GenerationStage) => o.onStage?.(s);
  const writer = await openVideoWriter(output, { width: plan.width, height: plan.height, fps, oddSize: 'pad', ...(o.crf !== undefined ? { crf: o.crf } : {}) });
  try {
    // 1. text: the encoder lives only inside encodePrompts
    stage('text');
    let tt = now();
    const useNull = (o.negativePrompt === undefined || o.negativePrompt === null) && models.nullEmbedding ? models.nullEmbedding() : null;
    if (useNull && (useNull.ndim !== 2 || useNull.shape[1] !== cfg.text_dim || useNull.shape[0]! > cfg.text_len))
      throw new ShapeError(`the DiT checkpoint's null_embedding is ${fmtShape(useNull.shape)}; expected (<= ${cfg.text_len}, ${cfg.text_dim})`);
    const needUncond = o.guidance !== 1;
    const prompts = [o.prompt, ...(needUncond && !useNull ? [o.negativePrompt ?? ''] : [])];
    const enc = await encodePrompts(models, prompts, cfg.text_len, cfg.text_dim, o.cacheDir);
    const context = enc.embeddings[0]!;
    const nullContext = needUncond ? (useNull ?? enc.embeddings[1]!) : null;
    const textSecs = secs(tt);

    // 2. i2v conditioning (CLIP, then the autoencoder's encode of the conditioning clip)
    let ae: VideoAutoencoder | null = null;
    let cond: WanConditioning | undefined;
    let imageSecs = 0;
    let condSecs = 0;
    if (conditioner) {
      tt = now();
      ae = await models.autoencoder();
      const c = await conditioner.condition(plan, ae, stage);
      imageSecs = c.imageSeconds;
      condSecs = +(secs(tt) - imageSecs).toFixed(3);
      cond = { y: c.y, clipFea: c.clipFea };
    }

    // 3. the DiT, alone with the latents (the autoencoder is small next to it, and loaded only for i2v by now)
    stage('denoise');
    tt = now();
    let dit: WanModel | null = await models.dit();
    const z = denoise(dit, plan, context, nullContext, o, cond);
    dit = null;
    cond = undefined;
    const denoiseSecs = secs(tt);

    // 4. decode, chunk by chunk, into the file
    stage('decode');
    tt = now();
    ae ??= await models.autoencoder();
    const frames = await decodeInto(ae, z, plan, writer, o.onFrames);
    await writer.close();
    const decodeSecs = secs(tt);
    return {
      output,
      mode,
      model: models.name ?? cfg.name,
      autoencoder: models.aeGeometry.name,
      frames,
      width: plan.width,
      height: plan.height,
      fps,
      steps: o.steps,
      guidance: o.guidance,
      shift: o.shift,
      seed: o.seed,
      sampler: o.sampler,
      latent_shape: [...plan.latentShape],
      dit_tokens: plan.tokens,
      negative: useNull ? 'null-embedding' : 'prompt',
      prompts_encoded: enc.encoded,
      prompts_cached: enc.cached,
      notes: plan.notes,
      seconds: { text: textSecs, image: imageSecs, condition: condSecs, denoise: denoiseSecs, decode: decodeSecs, total: secs(t0) },
    };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
