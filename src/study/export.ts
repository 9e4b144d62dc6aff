/**
 * `dcvg study export`: the adapted DC model of a finished `dcvg study adapt` adapt stage as a generate-ready model
 * folder (issue #21 item 5: the model shipped in assets/shapes-t2v). Read from the study folder's files alone (no
 * stage runs; a study still training elsewhere is only read):
 *
 *   adapt/model/                the Wan-layout folder the adapt stage assembled (docs/generate.md): config.json (the DC
 *                               DiT), diffusion_pytorch_model.safetensors (phase 3 merged: adapt/lora-merged/step-N,
 *                               N = adapt.lora.steps, the weights of the last adapted evaluation), dc-ae-v-study.* (the
 *                               study's DC-AE-V with its measured scaling factor: autoencoders/dc.scaled.json), the
 *                               frozen umT5 (models_t5_umt5-xxl-enc-bf16.*) and google/umt5-xxl/tokenizer.json
 *   adapt/done.json             the last tune / LoRA evaluation's scores; base/done.json the base DiT's
 *
 * The folder gets those files unchanged (the weights stay in the dtype the study evaluated them in, so the stated
 * scores are those of these bytes), plus dcvg_generate.json (the study's evaluation settings: 128x128, 16 frames, the
 * sampler, steps, guidance and shift, as generate's defaults for this folder), study-config.json (the study's config)
 * and README.md (the model card). Written to a temporary folder beside the target, checked (`resolveModelFolder`, the
 * size limit) and renamed into place.
 */
import { cpSync, existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { ValueError } from '../errors.js';
import { tempPathFor, trackTemp, untrackTemp } from '../io/files.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { GENERATE_DEFAULTS_FILE, resolveModelFolder, type FolderGenerateDefaults } from '../pipelines/model_folder.js';
import type { StudyConfig } from './config.js';
import type { ScoreRecord } from './report.js';
import { SHAPES_FRAMES, SHAPES_SIZE } from './world.js';

/** The issue's limit on the shipped folder: 40 MB (decimal; also under 40 MiB). */
export const SHIPPED_MODEL_MAX_BYTES = 40_000_000;

export interface ExportOptions {
  /** the study folder (study adapt's --out) */
  study: string;
  /** the model folder to write */
  to: string;
  /** replace `to` when it holds an earlier export */
  force?: boolean;
  maxBytes?: number;
  /** the dcvideogen commit doing the export (named in the model card) */
  commit?: string | null;
  /** how the export was asked for (the model card's command) */
  command?: string;
}

export interface ExportResult {
  to: string;
  study: string;
  scale: string;
  files: { name: string; bytes: number }[];
  bytes: number;
  params: { dit: number; autoencoder: number; textEncoder: number; total: number };
  /** the last adapted (phase 3, merged) evaluation, and the base DiT's last one */
  scores: { adapted: ScoreRecord; tune: ScoreRecord | null; base: ScoreRecord | null };
  generate: FolderGenerateDefaults;
}

/** Recorded in dcvg_generate.json: the folder is an export (what --force may replace). */
const MARKER = 'dcvg-study-export-1';

const J = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as unknown;

/** Parameters and data bytes of a safetensors file, from its header. */
export function safetensorsParams(path: string): number {
  const f = SafetensorsFile.open(path);
  try {
    return f.keys().reduce((a, k) => a + f.info(k).shape.reduce((x, y) => x * y, 1), 0);
  } finally {
    f.close();
  }
}

function filesUnder(dir: string): { name: string; bytes: number }[] {
  const out: { name: string; bytes: number }[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out.push({ name: relative(dir, p), bytes: st.size });
    }
  };
  walk(dir);
  return out;
}

const sameBytes = (a: string, b: string) => statSync(a).size === statSync(b).size && readFileSync(a).equals(readFileSync(b));

/** What the study folder holds for the export, checked: the adapt stage complete, its model the final merged one. */
function readStudy(study: string): { config: StudyConfig; model: string; adapted: ScoreRecord; tune: ScoreRecord | null; base: ScoreRecord | null; commands: { stage: string; argv: string[] }[] } {
  const sj = join(study, 'study.json');
  if (!existsSync(sj)) throw new ValueError(`study export: ${study} is not a study folder (no study.json); give the --out of dcvg study adapt`);
  const s = J(sj) as { format?: string; config?: StudyConfig };
  if (s.format !== 'dcvg-study-adapt-1' || !s.config) throw new ValueError(`study export: ${sj} is no dcvg study adapt record (format ${JSON.stringify(s.format)})`);
  const config = s.config;
  const done = join(study, 'adapt', 'done.json');
  const model = join(study, 'adapt', 'model');
  if (!existsSync(done) || !existsSync(model))
    throw new ValueError(`study export: the adapt stage of ${study} is not complete (no adapt/done.json); finish it first: dcvg study adapt --out ${study} --resume`);
  const d = J(done) as { lora?: ScoreRecord; tune?: ScoreRecord };
  const n = config.adapt.lora.steps;
  if (!d.lora || d.lora.step !== n) throw new ValueError(`study export: ${done} holds no LoRA evaluation at step ${n} (adapt.lora.steps)`);
  // the folder's DiT must be the final merged phase-3 weights (those of the last adapted evaluation)
  const merged = join(study, 'adapt', 'lora-merged', `step-${n}.safetensors`);
  const dit = join(model, 'diffusion_pytorch_model.safetensors');
  if (!existsSync(merged) || !existsSync(dit) || !sameBytes(merged, dit))
    throw new ValueError(`study export: ${dit} is not the final merged LoRA DiT ${merged}; run the adapt stage again (dcvg study adapt --out ${study} --stages adapt)`);
  const baseDone = join(study, 'base', 'done.json');
  const base = existsSync(baseDone) ? ((J(baseDone) as { score?: ScoreRecord }).score ?? null) : null;
  const cj = join(study, 'commands.jsonl');
  const commands = existsSync(cj)
    ? readFileSync(cj, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { stage: string; argv: string[] })
    : [];
  return { config, model, adapted: d.lora, tune: d.tune ?? null, base, commands };
}

/** Refuses a target that exists (without --force), or that is not an earlier export (with it: nothing else is replaced). */
function checkTarget(to: string, force: boolean): void {
  if (!existsSync(to)) return;
  if (!force) throw new ValueError(`study export: ${to} exists; pass --force to replace it`);
  if (!statSync(to).isDirectory()) throw new ValueError(`study export: ${to} exists and is not a folder; not replacing it`);
  if (!readdirSync(to).length) return;
  const gen = join(to, GENERATE_DEFAULTS_FILE);
  let mark: unknown = null;
  try {
    mark = (J(gen) as { _written_by?: unknown })._written_by;
  } catch {
    // absent or unreadable: not an export
  }
  if (mark !== MARKER) throw new ValueError(`study export: ${to} is not a model folder written by dcvg study export (no ${GENERATE_DEFAULTS_FILE} marked "${MARKER}"); not replacing it, remove it yourself`);
}

/** The adapted model against issue #21's targets for the shipped model. */
function targets(a: ScoreRecord, base: ScoreRecord | null): string {
  const yes = (ok: boolean) => (ok ? 'met' : 'not met');
  const t = a.train?.accuracy ?? 0;
  const h = a.heldOut?.accuracy ?? 0;
  const parts = [`training >= 90%: ${yes(t >= 90)}`, `held-out >= 75%: ${yes(h >= 75)}`];
  if (base?.train) parts.push(`within 2 points of the base on training combinations (${(t - base.train.accuracy).toFixed(1)}): ${yes(t >= base.train.accuracy - 2)}`);
  return `Issue #21's targets for the shipped model (on the study's prompt set): ${parts.join('; ')}. Its speed against the base is the study's claim (d) (\`arms/latency.json\`, docs/studies/adapt.md).`;
}

const pct = (s: ScoreRecord['train'] | undefined) => (s ? `${s.accuracy.toFixed(1)}%` : '-');
const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;
const fmtParams = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(1)} k`);

function modelCard(r: ExportResult, c: StudyConfig, commands: { stage: string; argv: string[] }[], o: ExportOptions, dc: { scalingFactor?: number }, vocab: number | null): string {
  const e = c.eval;
  const row = (name: string, s: ScoreRecord | null) =>
    s ? `| ${name} | ${s.step} | ${pct(s.train)} (${s.train?.clips ?? 0} clips) | ${pct(s.heldOut)} (${s.heldOut?.clips ?? 0} clips) | ${s.train ? s.train.allCorrect.toFixed(1) + '%' : '-'} / ${s.heldOut ? s.heldOut.allCorrect.toFixed(1) + '%' : '-'} |` : '';
  const q = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const trained = commands.filter((x) => ['data', 'autoencoders', 'text', 'latents', 'base', 'adapt'].includes(x.stage));
  const d = c.dit;
  return [
    `# shapes-t2v: a small DC-VideoGen text-to-video model of the shapes world`,
    ``,
    `A Wan-topology DiT (patch 1x1x1) in the latent space of a DC-AE-V f32t4c32, adapted from a base DiT trained on a`,
    `reduced-width Wan-VAE (f8t4c16) with AE-Adapt-V (embedding alignment, tuning, LoRA merged), by \`dcvg study adapt\``,
    `(issue #21, docs/studies/adapt.md) on the training split of the shapes world (\`../shared/docs/shapes-world.md\`: 16-frame`,
    `128x128 clips of one coloured shape moving on a plain background; 12 held-out (color, shape, direction) triples never`,
    `trained on). It makes ${SHAPES_FRAMES} frames of ${SHAPES_SIZE}x${SHAPES_SIZE}; other prompts than shapes-world captions are outside what it knows.`,
    ``,
    `\`\`\`sh`,
    `dcvg generate "a small red circle moving left on a black background" --model ${q(o.to)} -o out.mp4`,
    `dcvg score shapes out.mp4 --captions captions.tsv   # or a sidecar out.txt holding the prompt`,
    `\`\`\``,
    ``,
    `Installed as \`assets/shapes-t2v\` of a dcvideogen checkout it is generate's default model: \`--model\` can be left out.`,
    ``,
    `\`${GENERATE_DEFAULTS_FILE}\` makes the study's evaluation settings generate's defaults for this folder (${r.generate.width}x${r.generate.height}, ${r.generate.frames} frames,`,
    `${r.generate.fps} fps, ${r.generate.steps} ${r.generate.sampler} steps, guidance ${r.generate.guidance}, shift ${r.generate.shift}); every option still overrides them.`,
    ``,
    `## Semantic score`,
    ``,
    `Mean attribute accuracy (colour, shape, size, direction, background; \`dcvg score shapes\`) of generations for the`,
    `study's fixed prompt set: ${e.trainPrompts} training and ${e.heldOutPrompts} held-out captions, ${e.seeds} seeds each, ${e.steps} ${e.sampler} steps, guidance ${e.guidance}, shift ${e.shift}.`,
    ``,
    `| model | step | training combinations | held-out combinations | all attributes right (train / held-out) |`,
    `|---|---|---|---|---|`,
    row('this model (adapted: phase 3 LoRA, merged)', r.scores.adapted),
    row('after phase 2 (tuning)', r.scores.tune),
    row('base DiT (Wan-VAE latents)', r.scores.base),
    ``,
    targets(r.scores.adapted, r.scores.base),
    ``,
    `## Files`,
    ``,
    `| file | bytes |`,
    `|---|---|`,
    ...r.files.map((f) => `| ${f.name} | ${f.bytes.toLocaleString('en-US')} |`),
    `| total (without this README) | ${r.bytes.toLocaleString('en-US')} (${mb(r.bytes)}) |`,
    ``,
    `Weights in f32, as the study evaluated them. Parameters: DiT ${fmtParams(r.params.dit)} (dim ${d.dim}, ffn ${d.ffn_dim}, ${d.num_layers} layer(s), ${d.num_heads} heads, text_len ${c.text.textLen});`,
    `DC-AE-V ${fmtParams(r.params.autoencoder)} (encoder and decoder; scaling factor ${dc.scalingFactor ?? '?'}, measured on training clips); umT5 ${fmtParams(r.params.textEncoder)} (dim ${c.text.umt5.dim},`,
    `${c.text.umt5.num_layers} layer(s); frozen random weights, never trained: the DiT learns to read them); tokenizer: SentencePiece unigram over the training`,
    `captions' words${vocab ? ` (${vocab} pieces)` : ''}. Total ${fmtParams(r.params.total)}.`,
    ``,
    `## Where it came from`,
    ``,
    `- study folder: \`${resolve(r.study)}\` (scale \`${r.scale}\`; its config is \`study-config.json\` here)`,
    `- exported with dcvideogen ${o.commit ? `commit ${o.commit}` : '(commit unknown)'}; the study folder does not record the commit its commands ran with`,
    ``,
    `Reproduce: \`dcvg study adapt --out STUDY --scale ${r.scale} --config study-config.json --stages data,autoencoders,text,latents,base,adapt\`, then`,
    `\`${o.command ?? `dcvg study export --out STUDY --to ${q(o.to)}`}\`. The commands the study ran for this model (its commands.jsonl, stages data to adapt):`,
    ``,
    `\`\`\`sh`,
    ...trained.map((x) => `dcvg ${x.argv.map(q).join(' ')}`),
    `\`\`\``,
    ``,
  ].join('\n');
}

/** Writes the generate-ready folder of a study's adapted model (see the file comment); returns what it wrote. */
export function exportAdaptedModel(o: ExportOptions): ExportResult {
  const max = o.maxBytes ?? SHIPPED_MODEL_MAX_BYTES;
  const st = readStudy(o.study);
  checkTarget(o.to, o.force ?? false);
  const c = st.config;
  const tmp = tempPathFor(o.to);
  trackTemp(tmp);
  try {
    cpSync(st.model, tmp, { recursive: true });
    const gen: FolderGenerateDefaults = { width: SHAPES_SIZE, height: SHAPES_SIZE, frames: SHAPES_FRAMES, fps: 8, steps: c.eval.steps, guidance: c.eval.guidance, shift: c.eval.shift, sampler: c.eval.sampler };
    writeFileSync(join(tmp, GENERATE_DEFAULTS_FILE), JSON.stringify({ _written_by: MARKER, ...gen }, null, 1) + '\n');
    writeFileSync(join(tmp, 'study-config.json'), JSON.stringify(c, null, 1) + '\n');
    const folder = resolveModelFolder(tmp);
    if (folder.vae.family !== 'dc-ae-v') throw new ValueError(`study export: ${st.model} holds no DC-AE-V (the adapted model's autoencoder)`);
    const dit = safetensorsParams(folder.dit.path);
    const autoencoder = safetensorsParams(folder.vae.path);
    const textEncoder = safetensorsParams(folder.textEncoder.path);
    const files = filesUnder(tmp);
    const bytes = files.reduce((a, f) => a + f.bytes, 0);
    const r: ExportResult = {
      to: o.to,
      study: o.study,
      scale: c.scale,
      files,
      bytes,
      params: { dit, autoencoder, textEncoder, total: dit + autoencoder + textEncoder },
      scores: { adapted: st.adapted, tune: st.tune, base: st.base },
      generate: gen,
    };
    const dcDone = join(o.study, 'autoencoders', 'done.json');
    const dc = existsSync(dcDone) ? ((J(dcDone) as { models?: { dc?: { scalingFactor?: number } } }).models?.dc ?? {}) : {};
    const textDone = join(o.study, 'text', 'done.json');
    const vocab = existsSync(textDone) ? ((J(textDone) as { vocab?: number }).vocab ?? null) : null;
    writeFileSync(join(tmp, 'README.md'), modelCard(r, c, st.commands, o, dc, vocab));
    const total = filesUnder(tmp).reduce((a, f) => a + f.bytes, 0);
    if (total > max) throw new ValueError(`study export: the model folder would be ${total} bytes (${mb(total)}), over the limit of ${max} bytes (${mb(max)}); nothing written to ${o.to}`);
    if (existsSync(o.to)) {
      const old = tempPathFor(o.to);
      renameSync(o.to, old);
      renameSync(tmp, o.to);
      rmSync(old, { recursive: true, force: true });
    } else renameSync(tmp, o.to);
    return r;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    untrackTemp(tmp);
  }
}
