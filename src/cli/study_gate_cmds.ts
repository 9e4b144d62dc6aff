/**
 * `dcvg study gate`: the adapt study's autoencoder gate (src/study/ae_gate.ts) on any autoencoder and any folder of
 * shapes videos, e.g. a checkpoint of a study's autoencoder while it trains (its run folder's model.safetensors).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { CKPT } from '../train/checkpoint.js';
import { writeRawWeights } from '../train/ae_trainer.js';
import { ValueError } from '../errors.js';
import { loadAutoencoder } from '../pipelines/autoencoder.js';
import { CORNER, STRAY_MARGIN, gateAutoencoder } from '../study/ae_gate.js';
import { readShapesData } from '../study/world.js';
import { parseValues, type Out } from './common.js';
import { Progress } from './progress.js';

export const STUDY_GATE_HELP = `dcvg study gate --weights W [--model M] --data DIR [--clips N] [--min P] [--json]
  Does an autoencoder keep what the shapes world's semantic score reads? Reconstructs the first N videos of DIR (a
  folder written by dcvg data shapes, e.g. a study's data/held-out), reads each reconstruction with the shapes scorer
  against the video's own attributes, and measures PSNR over the object's pixels (off the background colour by more
  than the scorer's threshold) and over the whole frame: the study's autoencoder gate (docs/studies/adapt.md).
  --weights W        the autoencoder: a dcvg train-ae model.safetensors (it carries its config; a run folder's is
                     the EMA weights of its latest checkpoint), a train-ae run's checkpoint.safetensors (its trained
                     weights at that step, not the EMA), or weights with --model as dcvg reconstruct takes them
  --model M          the model config when the weights carry none (a DC-AE-V preset / config, wan-vae:<preset | json>)
  --data DIR         a dcvg data shapes folder (its manifest gives each video's attributes)
  --clips N          the first N videos of DIR (default 24, the study's gate; at most the folder's count)
  --min P            exit 1 when the mean attribute accuracy is below P percent (the study's gate uses 95)
  --json             print the result as JSON (per clip: accuracy, the attributes read wrong, object / whole PSNR,
                     stray pixels)
  Stray pixels: pixels of a reconstruction that the scorer's mask takes (off the background by more than its
  threshold) more than ${STRAY_MARGIN} px outside the original object's box, summed over frames; the scorer reads size
  and shape off the mask's bounding box, so one of them can turn both wrong. Those within ${CORNER} px of a frame corner are
  counted apart, with the largest deviation from the background colour there (8-bit levels).`;

export async function cmdStudyGate(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(STUDY_GATE_HELP + '\n');
    return 0;
  }
  const v = parseValues(args, { weights: { type: 'string' }, model: { type: 'string' }, data: { type: 'string' }, clips: { type: 'string' }, min: { type: 'string' }, json: { type: 'boolean' } }, 'study gate', false);
  const s = (k: string) => v[k] as string | undefined;
  if (!s('weights') && !s('model')) throw new ValueError('study gate needs --weights <model.safetensors> (and --model when the weights carry no config)');
  if (!s('data')) throw new ValueError('study gate needs --data <a dcvg data shapes folder>');
  if (s('weights') && !existsSync(s('weights')!)) throw new ValueError(`study gate: --weights ${s('weights')} not found`);
  const clips = s('clips') === undefined ? 24 : Number(s('clips'));
  if (!Number.isInteger(clips) || clips < 1) throw new ValueError(`--clips must be a positive integer, got "${s('clips')}"`);
  const min = s('min') === undefined ? null : Number(s('min'));
  if (min !== null && !(Number.isFinite(min) && min >= 0 && min <= 100)) throw new ValueError(`--min must be a percentage from 0 to 100, got "${s('min')}"`);
  const all = readShapesData(s('data')!);
  if (!all.length) throw new ValueError(`study gate: ${s('data')} holds no videos`);
  const videos = all.slice(0, clips);
  let weights = s('weights');
  let tmp: string | null = null;
  if (weights && basename(weights) === CKPT && !s('model')) {
    // a train-ae checkpoint: its raw weights, through a weights file beside nothing the user owns
    tmp = mkdtempSync(join(tmpdir(), 'dcvg-gate-'));
    weights = join(tmp, 'model.safetensors');
    writeRawWeights(dirname(s('weights')!), weights);
  }
  let ae;
  try {
    ae = loadAutoencoder({ model: s('model'), weights }, 'study gate');
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
  const bar = new Progress('study gate', videos.length, 'videos');
  const r = await gateAutoencoder(ae, s('data')!, videos, (done) => bar.update(done));
  bar.done();
  const passed = min === null ? null : r.accuracy >= min;
  if (v.json) out(JSON.stringify({ ...(min === null ? {} : { minAccuracy: min, passed }), ...r }, null, 1) + '\n');
  else {
    for (const c of r.clips)
      out(`${c.file}  ${c.accuracy.toFixed(0).padStart(3)}%  ${(c.wrong.length ? 'wrong: ' + c.wrong.join(', ') : 'all right').padEnd(44)}  object ${c.objectPsnr.toFixed(2)} dB, whole ${c.psnr.toFixed(2)} dB  strays ${c.strays} (${c.cornerStrays} at corners, corner deviation ${c.cornerDeviation})  ${c.caption}\n`);
    out(
      `${r.clips.length} reconstructions: ${r.accuracy.toFixed(1)}% attribute accuracy, ${r.allCorrect.toFixed(0)}% of clips all right; ` +
        `PSNR over the object's pixels ${r.objectPsnr.toFixed(2)} dB, whole frame ${r.psnr.toFixed(2)} dB; ` +
        `${r.strays} stray pixels (${r.cornerStrays} at frame corners; largest corner deviation from the background ${r.cornerDeviation} levels)` +
        (min === null ? '' : passed ? ` (passes --min ${min})` : ` (below --min ${min})`) +
        '\n',
    );
  }
  return passed === false ? 1 : 0;
}
