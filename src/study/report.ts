/**
 * The report of `dcvg study adapt` (stage `report`), written from the study folder alone: `report/adapt.md` with the
 * tables of each claim, score-against-steps plots (PNG, src/metrics/plot.ts), contact sheets (base against adapted,
 * the same prompts and seeds), and the exact commands (commands.jsonl). With `publish`, the same text goes into a file
 * between the markers `<!-- study:results:begin -->` / `<!-- study:results:end -->` (added at its end when absent),
 * its images into `img/` beside that file.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { writeLinePlotPng } from '../metrics/plot.js';
import type { StudyConfig } from './config.js';

/** One evaluation of a run (a line of its eval folder's scores.jsonl): the shapes-scorer results at a training step. */
export interface ScoreRecord {
  step: number;
  train: { accuracy: number; allCorrect: number; clips: number } | null;
  heldOut: { accuracy: number; allCorrect: number; clips: number } | null;
}

/** The evaluations recorded in `evalDir`/scores.jsonl, in order ([] when none yet). */
export function readScores(evalDir: string): ScoreRecord[] {
  const p = join(evalDir, 'scores.jsonl');
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ScoreRecord);
}

/** `s` as one POSIX shell word (quoted only when it needs to be). */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const J = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const BEGIN = '<!-- study:results:begin -->';
const END = '<!-- study:results:end -->';

interface Curve {
  name: string;
  /** adaptation (or training) steps at each evaluation, offset by the phases before it */
  points: { step: number; rec: ScoreRecord; seconds: number }[];
}

/** Sum of the trainer's per-step milliseconds (train.jsonl) up to each step: training wall time, resumes included. */
function cumulativeSeconds(runDir: string): Map<number, number> {
  const m = new Map<number, number>([[0, 0]]);
  const p = join(runDir, 'train.jsonl');
  if (!existsSync(p)) return m;
  let acc = 0;
  for (const line of readFileSync(p, 'utf8').split('\n')) {
    if (!line) continue;
    const r = JSON.parse(line) as { step?: number; ms?: number; eval?: unknown };
    if (r.eval !== undefined || typeof r.ms !== 'number' || typeof r.step !== 'number') continue;
    acc += r.ms / 1000;
    m.set(r.step, acc);
  }
  return m;
}

function curve(name: string, parts: { evalDir: string; runDir: string; offset: number; secondsOffset: number }[]): Curve {
  const points: Curve['points'] = [];
  for (const p of parts) {
    const secs = cumulativeSeconds(p.runDir);
    for (const rec of readScores(p.evalDir)) {
      if (rec.step === 0 && points.length) continue; // the previous phase's last point
      points.push({ step: p.offset + rec.step, rec, seconds: p.secondsOffset + (secs.get(rec.step) ?? NaN) });
    }
  }
  return { name, points };
}

const totalSeconds = (runDir: string) => Math.max(...cumulativeSeconds(runDir).values());
const lastStep = (runDir: string) => Math.max(...cumulativeSeconds(runDir).keys());

/** Values on a uniform grid of `dx` steps, linearly interpolated between evaluations (NaN outside them). */
function onGrid(c: Curve, key: 'train' | 'heldOut', dx: number, n: number): number[] {
  const pts = c.points.filter((p) => p.rec[key]).map((p) => [p.step, p.rec[key]!.accuracy] as const);
  return Array.from({ length: n }, (_, i) => {
    const x = i * dx;
    for (let k = 0; k < pts.length; k++) {
      const [x1, y1] = pts[k]!;
      if (x === x1) return y1;
      if (k > 0 && x < x1 && x > pts[k - 1]![0]) {
        const [x0, y0] = pts[k - 1]!;
        return y0 + ((y1 - y0) * (x - x0)) / (x1 - x0);
      }
    }
    return NaN;
  });
}

function gcd(a: number, b: number): number {
  return b ? gcd(b, a % b) : a;
}

function plotCurves(path: string, title: string, curves: Curve[], key: 'train' | 'heldOut'): void {
  const steps = curves.flatMap((c) => c.points.map((p) => p.step)).filter((s) => s > 0);
  const dx = steps.reduce(gcd, 0) || 1;
  const n = Math.max(...steps, 1) / dx + 1;
  writeLinePlotPng(path, {
    title,
    xLabel: 'steps',
    yLabel: 'score %',
    xScale: dx,
    series: curves.map((c) => ({ name: c.name, values: onGrid(c, key, dx, Math.min(n, 4000)) })),
  });
}

const pct = (x: number | undefined | null) => (x === undefined || x === null || !Number.isFinite(x) ? '—' : `${x.toFixed(1)}%`);
const secs = (x: number) => (Number.isFinite(x) ? (x < 120 ? `${x.toFixed(1)} s` : x < 7200 ? `${(x / 60).toFixed(1)} min` : `${(x / 3600).toFixed(2)} h`) : '—');

/** The first point of a curve whose training score is at least `level`. */
function reach(c: Curve, level: number): Curve['points'][number] | null {
  return c.points.find((p) => p.step > 0 && (p.rec.train?.accuracy ?? -1) >= level) ?? null;
}

/** The autoencoder gate's result (src/study/ae_gate.ts) for the models table, or nothing for a study without one. */
function gateText(path: string): string {
  if (!existsSync(path)) return '';
  const g = J(path) as { clips: unknown[]; accuracy: number; allCorrect: number; objectPsnr: number; psnr: number };
  return `; gate: its reconstructions of ${g.clips.length} held-out videos score ${pct(g.accuracy)} (${pct(g.allCorrect)}), PSNR ${g.objectPsnr.toFixed(2)} dB over the object's pixels, ${g.psnr.toFixed(2)} dB whole-frame`;
}

export async function writeAdaptReport(out: string, c: StudyConfig, publish?: string): Promise<{ report: string }> {
  const dir = join(out, 'report');
  mkdirSync(dir, { recursive: true });
  const D = (...p: string[]) => join(out, ...p);
  const aes = J(D('autoencoders', 'done.json')).models as Record<string, { family: string; channels: number; spatial: number; temporal: number; scalingFactor: number | null; latentsStd?: number[] }>;
  const text = J(D('text', 'done.json')) as { vocab: number; umt5: Record<string, unknown>; frozen: string };
  const data = J(D('data', 'done.json')) as { train: number; heldOut: number; prompts: number };

  const alignSteps = lastStep(D('adapt', 'align'));
  const alignSecs = totalSeconds(D('adapt', 'align'));
  const tuneSteps = c.adapt.tune.steps;
  const tuneSecs = totalSeconds(D('adapt', 'tune'));
  const base = curve('base DiT (base latents)', [{ evalDir: D('base', 'evals'), runDir: D('base', 'run'), offset: 0, secondsOffset: 0 }]);
  const adapted = curve('AE-Adapt-V (align + tune + LoRA)', [
    { evalDir: D('adapt', 'tune-evals'), runDir: D('adapt', 'tune'), offset: 0, secondsOffset: alignSecs },
    { evalDir: D('adapt', 'lora-evals'), runDir: D('adapt', 'lora'), offset: tuneSteps, secondsOffset: alignSecs + tuneSecs },
  ]);
  const curves = [base, adapted];
  let noAlign: Curve | null = null;
  if (existsSync(D('arms', 'no-align', 'tune-evals'))) {
    noAlign = curve('(a) without alignment', [
      { evalDir: D('arms', 'no-align', 'tune-evals'), runDir: D('arms', 'no-align', 'tune'), offset: 0, secondsOffset: 0 },
      { evalDir: D('arms', 'no-align', 'lora-evals'), runDir: D('arms', 'no-align', 'lora'), offset: tuneSteps, secondsOffset: totalSeconds(D('arms', 'no-align', 'tune')) },
    ]);
    curves.push(noAlign);
  }
  let fullFt: Curve | null = null;
  if (existsSync(D('arms', 'full-ft', 'evals'))) {
    fullFt = curve('(b) full fine-tuning', [{ evalDir: D('arms', 'full-ft', 'evals'), runDir: D('arms', 'full-ft', 'run'), offset: tuneSteps, secondsOffset: alignSecs + tuneSecs }]);
    // it starts from the end of phase 2, as LoRA does
    const start = adapted.points.filter((p) => p.step <= tuneSteps).at(-1);
    if (start) fullFt.points.unshift(start);
    curves.push(fullFt);
  }
  const scratch = curve('(c) DC DiT from scratch', [{ evalDir: D('arms', 'scratch', 'evals'), runDir: D('arms', 'scratch', 'run'), offset: 0, secondsOffset: 0 }]);
  curves.push(scratch);
  plotCurves(join(dir, 'score-train.png'), 'semantic score, training combinations', curves, 'train');
  plotCurves(join(dir, 'score-held-out.png'), 'semantic score, held-out combinations', curves, 'heldOut');
  const lastBase = J(D('base', 'done.json')) as { step: number; score: ScoreRecord; reachedTarget: boolean };
  const sheet = (evalDir: string) => {
    const s = readScores(evalDir).at(-1)!;
    return join(evalDir, `sheet-${s.step}.png`);
  };
  copyFileSync(sheet(D('base', 'evals')), join(dir, 'sheet-base.png'));
  copyFileSync(sheet(D('adapt', 'lora-evals')), join(dir, 'sheet-adapted.png'));
  const lat = existsSync(D('arms', 'latency.json')) ? (J(D('arms', 'latency.json')) as { base: { tokens: number; frames?: number; denoise: number; decode: number }; adapted: { tokens: number; frames?: number; denoise: number; decode: number }; tokenRatio: number; steps: number; guidance: number; runs: number }) : null;

  const L: string[] = [];
  const row = (...x: (string | number)[]) => L.push(`| ${x.join(' | ')} |`);
  L.push(`## Results (scale "${c.scale}")`, '');
  L.push(
    `Data: ${data.train} training videos, ${data.heldOut} held-out videos; the evaluation prompt set is ${c.eval.trainPrompts} training and ${c.eval.heldOutPrompts} held-out captions x ${c.eval.seeds} seeds, ` +
      `${c.eval.steps} ${c.eval.sampler} steps, CFG ${c.eval.guidance}, shift ${c.eval.shift}, 16 frames of 128x128 asked for (the base's Wan VAE makes 1 + 4k: 13 from 4 latent frames; DC-AE-V 16). Score: mean attribute accuracy (percent); all-correct in parentheses.`,
    '',
  );
  L.push('### Models', '', '| model | what | details |', '|---|---|---|');
  for (const [k, a] of Object.entries(aes)) row(k === 'base' ? 'base autoencoder' : 'DC-AE-V', `${a.family} f${a.spatial}t${a.temporal}c${a.channels}`, `${a.latentsStd ? `per-channel latents_mean / latents_std of mu measured on training clips (std ${Math.min(...a.latentsStd).toPrecision(3)}–${Math.max(...a.latentsStd).toPrecision(3)})` : `scaling factor ${a.scalingFactor ?? 'from its config'}`}; ${c.autoencoders[k as 'base' | 'dc'].steps} train-ae steps${gateText(D('autoencoders', `${k}.gate.json`))}`);
  row('text encoder', `umT5 topology ${text.umt5.dim}-wide, ${text.umt5.num_layers} layers`, `${text.frozen}; tokenizer: ${text.vocab} SentencePiece-unigram pieces from the training captions' words`);
  row('base DiT', `Wan topology, patch 1x2x2, ${aes.base!.channels} channels, dim ${c.dit.dim}, ${c.dit.num_layers} blocks`, `${lastBase.step} train-dit steps; ${lastBase.reachedTarget ? 'reached' : 'did not reach'} the ${c.base.target}% target`);
  L.push('');
  const sc = (r: ScoreRecord | undefined | null) => (r ? `${pct(r.train?.accuracy)} (${pct(r.train?.allCorrect)}) / ${pct(r.heldOut?.accuracy)} (${pct(r.heldOut?.allCorrect)})` : '—');
  L.push('### Scores (training / held-out combinations)', '', '| model | steps | score train / held-out |', '|---|---:|---|');
  const last = (cv: Curve | null) => cv?.points.at(-1);
  row('base DiT', lastBase.step, sc(lastBase.score));
  row('assembled (aligned patch embedder, zero head), before phase 2', 0, sc(adapted.points.find((p) => p.step === 0)?.rec));
  row('AE-Adapt-V, end of phase 2 (tune)', tuneSteps, sc(adapted.points.filter((p) => p.step <= tuneSteps).at(-1)?.rec));
  row('AE-Adapt-V, end of phase 3 (LoRA)', last(adapted)?.step ?? '—', sc(last(adapted)?.rec));
  if (noAlign) {
    row('(a) without alignment, before phase 2', 0, sc(noAlign.points.find((p) => p.step === 0)?.rec));
    row('(a) without alignment, end', last(noAlign)?.step ?? '—', sc(last(noAlign)?.rec));
  }
  if (fullFt) row('(b) full fine-tuning instead of LoRA, end', last(fullFt)?.step ?? '—', sc(last(fullFt)?.rec));
  row('(c) DC DiT from scratch, end', last(scratch)?.step ?? '—', sc(last(scratch)?.rec));
  L.push('', '![score, training combinations](score-train.png)', '', '![score, held-out combinations](score-held-out.png)', '');
  L.push('Steps of the adaptation curves count phase 2 from 0 and phase 3 after it; phase 1 (alignment) adds ' + `${alignSteps} steps (${secs(alignSecs)}) before them.`, '');

  // (c) cost to reach the base model's score (within 2 points, the issue's criterion)
  const level = (lastBase.score.train?.accuracy ?? NaN) - 2;
  const ra = reach(adapted, level);
  const rs = reach(scratch, level);
  L.push('### Claim (c): cost to reach the base model\'s training score (within 2 points)', '', '| path | steps | training wall time |', '|---|---:|---:|');
  row('AE-Adapt-V (align + tune + LoRA)', ra ? `${alignSteps} + ${ra.step}` : `not reached in ${alignSteps} + ${last(adapted)?.step ?? 0}`, ra ? secs(ra.seconds) : '—');
  row('from scratch', rs ? rs.step : `not reached in ${last(scratch)?.step ?? 0}`, rs ? secs(rs.seconds) : '—');
  L.push('');
  if (ra && rs) {
    const r = rs.seconds / ra.seconds;
    L.push(r >= 1 ? `Adaptation reached it in ${r.toFixed(1)}x less training time than training from scratch.` : `Training from scratch reached it in ${(1 / r).toFixed(1)}x less training time than adaptation.`, '');
  }
  else if (ra && !rs) L.push(`Training from scratch did not reach it within its budget; the ratio is at least ${(totalSeconds(D('arms', 'scratch', 'run')) / ra.seconds).toFixed(1)}x.`, '');
  else if (!ra) L.push('Adaptation did not reach the base model\'s score within its budget.', '');

  if (lat) {
    const tb = lat.base.denoise + lat.base.decode;
    const ta = lat.adapted.denoise + lat.adapted.decode;
    L.push(`### Claim (d): generation latency (median of ${lat.runs}, ${lat.steps} steps, CFG ${lat.guidance}, 128x128, 16 frames asked for)`, '', '| model | frames | DiT tokens | sampling | decode | total |', '|---|---:|---:|---:|---:|---:|');
    row('base', lat.base.frames ?? '—', lat.base.tokens, `${lat.base.denoise.toFixed(3)} s`, `${lat.base.decode.toFixed(3)} s`, `${tb.toFixed(3)} s`);
    row('adapted', lat.adapted.frames ?? '—', lat.adapted.tokens, `${lat.adapted.denoise.toFixed(3)} s`, `${lat.adapted.decode.toFixed(3)} s`, `${ta.toFixed(3)} s`);
    row('speed-up', '', `${lat.tokenRatio.toFixed(1)}x fewer`, `${(lat.base.denoise / lat.adapted.denoise).toFixed(2)}x`, `${(lat.base.decode / lat.adapted.decode).toFixed(2)}x`, `${(tb / ta).toFixed(2)}x`);
    L.push('', `The token-count bound on the sampling speed-up is ${lat.tokenRatio.toFixed(0)}x (attention grows faster than the token count, the rest of each block linearly).`, '');
  }
  L.push('### Contact sheets (seed 0 of each prompt; rows: prompts, training then held-out; every second frame)', '');
  const prompts = J(D('data', 'prompts.json')).prompts as { caption: string; split: string }[];
  L.push(...prompts.map((p, i) => `${i + 1}. ${p.caption} (${p.split})`), '');
  L.push('| base | adapted |', '|---|---|', '| ![base](sheet-base.png) | ![adapted](sheet-adapted.png) |', '');
  L.push('### Commands', '', `Every command the study ran, in order (\`$OUT\` is the study folder; \`--resume\` lines continue a run in segments between evaluations or after an interruption):`, '', '```');
  const seen = new Set<string>();
  for (const line of readFileSync(D('commands.jsonl'), 'utf8').split('\n').filter(Boolean)) {
    const { argv } = JSON.parse(line) as { argv: string[] };
    // an argument holding the study folder: double-quoted with the folder as $OUT (the rest escaped), else as it is
    const arg = (a: string) => (a.includes(out) ? `"${a.split(out).map((p) => p.replace(/[\\"`$]/g, '\\$&')).join('$OUT')}"` : shellQuote(a));
    const cmd = 'dcvg ' + argv.map(arg).join(' ');
    if (seen.has(cmd)) continue;
    seen.add(cmd);
    L.push(cmd);
  }
  L.push('```', '');
  const body = L.join('\n');
  writeFileAtomic(join(dir, 'adapt.md'), `# AE-Adapt-V study: ${out}\n\n${body}`);
  if (publish) {
    const img = join(dirname(publish), 'img', 'adapt');
    mkdirSync(img, { recursive: true });
    let pub = body;
    for (const f of ['score-train.png', 'score-held-out.png', 'sheet-base.png', 'sheet-adapted.png']) {
      copyFileSync(join(dir, f), join(img, f));
      pub = pub.split(`(${f})`).join(`(${relative(dirname(publish), join(img, f))})`);
    }
    const old = existsSync(publish) ? readFileSync(publish, 'utf8') : `# ${basename(publish)}\n`;
    const i = old.indexOf(BEGIN);
    const j = old.indexOf(END);
    const next = i >= 0 && j > i ? `${old.slice(0, i + BEGIN.length)}\n${pub}\n${old.slice(j)}` : `${old.trimEnd()}\n\n${BEGIN}\n${pub}\n${END}\n`;
    writeFileAtomic(publish, next);
  }
  return { report: join(dir, 'adapt.md') };
}
