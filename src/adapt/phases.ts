/**
 * AE-Adapt-V phases 2 and 3 on the assembled DC-VideoGen DiT (patch 1x1x1), both with the reference flow-matching
 * objective of spec §5.5 (src/diffusion/flow_matching.ts: 50-point shifted grid, integer t snapped to it, the network
 * conditioned on the raw t, weighted MSE, 10% text dropout to the null embedding).
 *
 * Phase 2, `dcvg adapt tune` (§5.4): trainable patch_embedding, head.head, head.modulation; all else frozen. AdamW lr
 * 1e-4, betas (0.9, 0.999), wd 0, grad clip 0.1, constant; shift 8 (T2V; 5 for I2V).
 * I2V DiTs (in_dim = C + t + C, img_emb) train on I2V latent folders (dcvg latents --i2v): the network gets the
 * sample's img_feat as y and clip_feat as clip_fea, exactly what image-to-video generation passes.
 * Phase 3, `dcvg adapt lora` (§5.6): LoRA (rank 256, alpha 512) on blocks.N.self_attn.{q,k,v,o}, blocks.N.ffn.{0,2},
 * time_embedding.{0,2}, time_projection.1; fully trained patch_embedding, head.head, head.modulation; frozen:
 * cross-attention, text_embedding, img_emb, norms, block modulation. AdamW lr 5e-5 with 1000 linear warm-up steps then
 * constant, grad clip 0.1, EMA 0.9999.
 *
 * Output `model.safetensors` (docs/adapt.md "Formats"): every weight in Wan's original keys (EMA values where trained
 * and an EMA runs, frozen ones as loaded), `null_embedding`, and in phase 3 the adapters `<layer>.lora_A.weight`
 * (r, in) / `<layer>.lora_B.weight` (out, r) beside the untouched base `<layer>.weight` (peft's `.base_layer` infix
 * dropped); metadata format, config (Wan config JSON), step, phase, and for phase 3 lora_rank, lora_alpha,
 * lora_targets (JSON list of layer paths).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { dropTextContext, flowMatchInputs, flowMatchLoss, sampleTrainingTimesteps, trainingGrid, type TrainingGrid } from '../diffusion/flow_matching.js';
import { WanModel, loadWanWeights, parseWanConfig, resolveWanConfig, wanConfigToJson, type WanConfig } from '../models/wan/index.js';
import { applyLora, loraLayers } from '../nn/lora.js';
import * as ops from '../tensor/ops.js';
import { Rng, randn } from '../tensor/random.js';
import { Tensor, castTo, noGrad, zeros } from '../tensor/tensor.js';
import type { Ema } from '../train/ema.js';
import { nullable, positive, regex, text, unit, posInt, type Check } from '../train/options.js';
import { loadAdaptSet } from './latents.js';
import { runPhase, type CommonOptions, type PhaseCallbacks, type PhaseModel, type PhaseSpec } from './trainer.js';

export interface TuneOptions extends CommonOptions {
  /** the assembled DiT (or a previous phase's model.safetensors) */
  init: string;
  /** Wan preset / config JSON; default the `config` metadata of the --init file */
  model: string | null;
  /** training flow shift; null: 8 for a T2V DiT, 5 for an I2V one (spec §5.4) */
  shift: number | null;
  textDrop: number;
  /** regular expression on parameter keys: what trains fully */
  trainOnly: string;
}

export interface LoraPhaseOptions extends TuneOptions {
  rank: number;
  alpha: number;
  /** regular expression on layer paths: the Linear layers that get adapters */
  loraTargets: string;
}

/** The fully trained set of phases 2 and 3. */
export const PATCH_HEAD_RE = '^(patch_embedding\\.(weight|bias)|head\\.head\\.(weight|bias)|head\\.modulation)$';
/** Phase 3's LoRA targets: every Linear except cross-attention, text_embedding, img_emb and head. */
export const LORA_TARGETS_RE = '^(blocks\\.\\d+\\.self_attn\\.[qkvo]|blocks\\.\\d+\\.ffn\\.[02]|time_embedding\\.[02]|time_projection\\.1)$';

const COMMON_DIT = { accum: 1, schedule: 'constant' as const, minLrRatio: 0.1, weightDecay: 0, beta1: 0.9, beta2: 0.999, clip: 0.1, seed: 0, holdout: null, model: null, shift: null, textDrop: 0.1, trainOnly: PATCH_HEAD_RE, init: '' };

/** Spec §5.4: 6k steps, batch 2 per GPU, lr 1e-4 constant, clip 0.1, shift 8 (T2V) / 5 (I2V), text dropout 0.1 (no EMA in the recipe). */
export const TUNE_DEFAULTS: Omit<TuneOptions, 'data' | 'out'> = { ...COMMON_DIT, steps: 6000, batch: 2, lr: 1e-4, warmup: 0, emaDecay: 0, ckptEvery: 500, evalEvery: 500 };

/** Spec §5.6: rank 256, alpha 512, lr 5e-5 with 1000 warm-up steps, clip 0.1, EMA 0.9999, 40k steps (1.3B). */
export const LORA_DEFAULTS: Omit<LoraPhaseOptions, 'data' | 'out'> = {
  ...COMMON_DIT,
  steps: 40000,
  batch: 2,
  lr: 5e-5,
  warmup: 1000,
  emaDecay: 0.9999,
  ckptEvery: 1000,
  evalEvery: 1000,
  rank: 256,
  alpha: 512,
  loraTargets: LORA_TARGETS_RE,
};

export const TUNE_FORMAT = 'dcvg-adapt-tune-1';
export const LORA_FORMAT = 'dcvg-adapt-lora-1';
export const ADAPT_WEIGHTS_FORMAT = 'dcvg-wan-weights';

/**
 * One step of the reference objective for a batch: noise at the snapped grid points, condition on the raw integer t,
 * weighted MSE against ε − x₀. `forward` is the network (the DiT's forward).
 */
export function flowMatchObjective(
  forward: (noisy: Tensor, t: number[], ctx: Tensor) => Tensor,
  x0: Tensor,
  ctx: Tensor,
  noise: Tensor,
  t: number[],
  grid: TrainingGrid,
): { loss: Tensor; pred: Tensor; ids: number[] } {
  const inp = flowMatchInputs(x0, noise, t, grid);
  const pred = forward(inp.noisy, inp.t, ctx);
  return { loss: flowMatchLoss(pred, inp.target, inp.weights), pred, ids: inp.ids };
}

/** The Wan config of a phase: --model, else the `config` metadata of the --init file. */
export function phaseConfig(model: string | null, init: string): WanConfig {
  if (model) return resolveWanConfig(model);
  if (existsSync(init) && statSync(init).isDirectory()) {
    if (!existsSync(join(init, 'config.json'))) throw new ValueError(`${init} has no config.json; pass --model <preset | config.json>`);
    return resolveWanConfig(join(init, 'config.json'));
  }
  let raw: string | undefined;
  try {
    const f = SafetensorsFile.open(init);
    raw = f.metadata.config;
    f.close();
  } catch {
    raw = undefined;
  }
  if (!raw) throw new ValueError(`${init} carries no Wan config (metadata "config"); pass --model <preset | config.json>`);
  try {
    const j = JSON.parse(raw) as Record<string, unknown>;
    return parseWanConfig(j, typeof j.name === 'string' ? j.name : 'dit', init);
  } catch (e) {
    throw new ValueError(`${init}: metadata "config" is not a Wan config (${(e as Error).message})`);
  }
}

const TUNE_CHECKS: readonly (readonly [keyof LoraPhaseOptions, string, Check])[] = [
  ['init', '--init', text],
  ['model', '--model', nullable(text)],
  ['shift', '--shift', nullable(positive)],
  ['textDrop', '--text-drop', unit],
  ['trainOnly', '--train-only', regex],
];
const LORA_CHECKS: readonly (readonly [keyof LoraPhaseOptions, string, Check])[] = [...TUNE_CHECKS, ['rank', '--rank', posInt], ['alpha', '--alpha', positive], ['loraTargets', '--lora-targets', regex]];

/**
 * The trainable set of phase 2 or 3 on a loaded DiT: everything frozen, then (phase 3) adapters on the layers matching
 * `loraTargets`, and the tensors matching `trainOnly` trained fully (widened to float32). Returns the adapted layer paths.
 */
export function setupTrainable(model: WanModel, phase: 'tune' | 'lora', o: Pick<LoraPhaseOptions, 'trainOnly' | 'seed'> & Partial<Pick<LoraPhaseOptions, 'loraTargets' | 'rank' | 'alpha'>>): string[] {
  const re = new RegExp(o.trainOnly);
  model.freeze(() => true);
  let loraTargets: string[] = [];
  if (phase === 'lora') loraTargets = applyLora(model, new RegExp(o.loraTargets!), { rank: o.rank!, alpha: o.alpha!, seed: o.seed, freeze: 'model' });
  // fully trained tensors: float32 (a bf16 checkpoint's are widened), requiring grad
  for (const [k, p] of model.namedParams()) {
    if (!re.test(k)) continue;
    if (p.value.dtype !== 'f32') p.set(castTo(p.value, 'f32'), k);
    p.trainable = true;
    p.value.requiresGrad = true;
  }
  for (const [, l] of loraLayers(model))
    for (const part of [l.lora_A.weight, l.lora_B.weight]) {
      part.trainable = true;
      part.value.requiresGrad = true;
    }
  return loraTargets;
}

/** The spec's training shift for a DiT: 8 for T2V, 5 for I2V (§5.4). */
export const defaultShift = (cfg: Pick<WanConfig, 'model_type'>): number => (cfg.model_type === 'i2v' ? 5 : 8);

/**
 * Builds the DiT of phase 2 or 3 with its trainable set, data and objective. `predict` is the network the objective
 * runs on samples `ids` (an I2V DiT gets their condition channels y = img_feat concatenated after the noisy latent,
 * and clip_feat as clip_fea: the inputs image-to-video generation gives it).
 */
export function buildAdaptDiT(
  o: TuneOptions & Partial<LoraPhaseOptions>,
  phase: 'tune' | 'lora',
): { model: PhaseModel; samples: number; predict: (ids: number[], noisy: Tensor, t: number[], ctx: Tensor) => Tensor } {
  const cfg = phaseConfig(o.model, o.init);
  const i2v = cfg.model_type === 'i2v';
  const data = loadAdaptSet(o.data, { context: true, i2v });
  const [C, F, H, W] = data.dc[0]!.shape as [number, number, number, number];
  const Cy = i2v ? data.imgFeat![0]!.shape[0]! : 0;
  if (cfg.in_dim !== C + Cy || cfg.out_dim !== C)
    throw new ShapeError(
      `adapt ${phase}: ${cfg.name} has in_dim ${cfg.in_dim} / out_dim ${cfg.out_dim}, the DC latents ${C} channels${i2v ? ` and their I2V condition img_feat ${Cy} (in_dim must be ${C + Cy})` : ''} (${o.data})`,
    );
  if (i2v && data.clipFeat![0]!.shape[1] !== cfg.image_dim)
    throw new ShapeError(`adapt ${phase}: ${cfg.name} has image_dim ${cfg.image_dim}, the folder's clip_feat ${fmtShape(data.clipFeat![0]!.shape)} (${o.data})`);
  const [pt, ph, pw] = cfg.patch_size;
  if (F % pt || H % ph || W % pw) throw new ShapeError(`adapt ${phase}: patch [${cfg.patch_size.join(', ')}] does not divide the latents' F, H, W = ${F}, ${H}, ${W}`);
  const [L, Dt] = data.contexts![0]!.shape as [number, number];
  if (Dt !== cfg.text_dim || L > cfg.text_len) throw new ShapeError(`adapt ${phase}: contexts (${L}, ${Dt}) do not fit text_len ${cfg.text_len} / text_dim ${cfg.text_dim}`);

  const model = new WanModel(cfg);
  const loaded = loadWanWeights(model, o.init);
  const r = loaded.report;
  if (r.missing.length || r.unexpected.length || r.mismatched.length)
    throw new ValueError(`adapt ${phase}: ${o.init} does not match ${cfg.name}: ${r.missing.length} missing (${r.missing.slice(0, 3).join(', ')}), ${r.unexpected.length} unexpected (${r.unexpected.slice(0, 3).join(', ')}), ${r.mismatched.length} mismatched`);
  let nullContext: Tensor = data.nullContext ?? loaded.nullEmbedding ?? zeros([L, Dt]);
  if (nullContext.ndim !== 2 || nullContext.shape[1] !== Dt || nullContext.shape[0]! > L) throw new ShapeError(`adapt ${phase}: null embedding ${fmtShape(nullContext.shape)} must be (<= ${L}, ${Dt})`);
  nullContext = castTo(nullContext, 'f32');
  const nullPadded = nullContext.shape[0] === L ? nullContext : ops.pad(nullContext, [0, 0, 0, L - nullContext.shape[0]!]);

  const loraTargets = setupTrainable(model, phase, o);
  const named = model.namedParams();
  const trainable = named.filter(([, p]) => p.trainable).map(([k, p]) => [k, p.value] as [string, Tensor]);
  if (!trainable.length) throw new ValueError(`adapt ${phase}: --train-only ${o.trainOnly} matches no parameter`);
  const grid = trainingGrid(o.shift ?? defaultShift(cfg));
  const configJson = { name: cfg.name, ...wanConfigToJson(cfg) };
  const predict = (ids: number[], noisy: Tensor, t: number[], ctx: Tensor) =>
    model.forward(noisy, t, ctx, i2v ? { y: ops.stack(ids.map((i) => data.imgFeat![i]!), 0), clipFea: ops.stack(ids.map((i) => data.clipFeat![i]!), 0) } : {});
  const stackIds = (ids: number[]) => ({ x0: ops.stack(ids.map((i) => data.dc[i]!), 0), ctx: ops.stack(ids.map((i) => data.contexts![i]!), 0) });

  return {
    samples: data.dc.length,
    predict,
    model: {
      module: model,
      trainable,
      paramCount: named.reduce((s, [, p]) => s + p.size, 0),
      files: ['model.safetensors', 'config.json'],
      meta: { config: configJson, lora: phase === 'lora' ? { rank: o.rank, alpha: o.alpha, targets: loraTargets } : null },
      micro(ids, rng) {
        // the random draws go sample by sample (t, text dropout, noise), so a batch of N and N micro-batches of 1
        // (gradient accumulation) see the same numbers
        const t: number[] = [];
        const ctxs: Tensor[] = [];
        const noises: Tensor[] = [];
        let dropped = 0;
        for (const i of ids) {
          t.push(sampleTrainingTimesteps(1, rng, grid.numTrainTimesteps)[0]!);
          const d = dropTextContext(ops.unsqueeze(data.contexts![i]!, 0), nullPadded, o.textDrop, rng);
          ctxs.push(d.contexts);
          if (d.dropped[0]) dropped++;
          noises.push(randn([1, ...data.dc[i]!.shape], rng));
        }
        const x0 = ops.stack(ids.map((i) => data.dc[i]!), 0);
        const { loss } = flowMatchObjective((x, tt, c) => predict(ids, x, tt, c), x0, ops.cat(ctxs, 0), ops.cat(noises, 0), t, grid);
        return { loss, record: { t, dropped } };
      },
      evaluate(ids) {
        // fixed noise and timesteps (spread over the grid), no text dropout: comparable from one evaluation to the next
        return noGrad(() => {
          const rng = new Rng(o.seed * 31 + 977);
          const ts = [100, 300, 500, 700, 900];
          let wl = 0;
          let mse = 0;
          let n = 0;
          for (const i of ids)
            for (const tt of ts) {
              const { x0, ctx } = stackIds([i]);
              const noise = randn(x0.shape, rng);
              const inp = flowMatchInputs(x0, noise, [tt], grid);
              const pred = predict([i], inp.noisy, inp.t, ctx);
              wl += flowMatchLoss(pred, inp.target, inp.weights).item();
              mse += flowMatchLoss(pred, inp.target, [1]).item();
              n++;
            }
          return { loss: wl / n, mse: mse / n };
        });
      },
      exportWeights(runDir: string, step: number, ema: Ema | null) {
        const shadows = ema?.shadows() ?? new Map<string, Tensor>();
        const weights = new Map<string, WritableTensor>(named.map(([k, p]) => [k, shadows.get(k) ?? p.value]));
        weights.set('null_embedding', nullContext);
        const metadata: Record<string, string> = { format: ADAPT_WEIGHTS_FORMAT, phase, config: JSON.stringify(configJson), step: String(step), ema: ema ? String(ema.decay) : 'none' };
        if (phase === 'lora') Object.assign(metadata, { lora_rank: String(o.rank), lora_alpha: String(o.alpha), lora_targets: JSON.stringify(loraTargets) });
        saveSafetensors(join(runDir, 'model.safetensors'), weights, { metadata });
        writeConfig(runDir, configJson);
      },
    },
  };
}

function writeConfig(runDir: string, cfg: object): void {
  const p = join(runDir, 'config.json');
  const s = JSON.stringify(cfg, null, 2) + '\n';
  if (!existsSync(p) || readFileSync(p, 'utf8') !== s) writeFileAtomic(p, s);
}

export const TUNE_SPEC: PhaseSpec<TuneOptions> = {
  command: 'adapt tune',
  format: TUNE_FORMAT,
  defaults: TUNE_DEFAULTS,
  checks: TUNE_CHECKS as readonly (readonly [keyof TuneOptions, string, Check])[],
  pathKeys: ['init'],
  build: (o) => buildAdaptDiT(o, 'tune'),
};

export const LORA_SPEC: PhaseSpec<LoraPhaseOptions> = {
  command: 'adapt lora',
  format: LORA_FORMAT,
  defaults: LORA_DEFAULTS,
  checks: LORA_CHECKS,
  pathKeys: ['init'],
  build: (o) => buildAdaptDiT(o, 'lora'),
};

export function trainTune(opts: Partial<TuneOptions> & { out: string; resume?: boolean }, cb: PhaseCallbacks = {}) {
  return runPhase(TUNE_SPEC, opts, cb);
}

export function trainLora(opts: Partial<LoraPhaseOptions> & { out: string; resume?: boolean }, cb: PhaseCallbacks = {}) {
  return runPhase(LORA_SPEC, opts, cb);
}
