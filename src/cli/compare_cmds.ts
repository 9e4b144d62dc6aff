/**
 * `dcvg compare-ae VIDEO --model A [--weights WA] --compare-model B [--compare-weights WB]`: both autoencoders on the
 * same video, one row each: PSNR, SSIM, latent values per frame (and the compression ratio), frames/s and peak
 * memory.
 *
 * Each model runs in a child process of its own (`dcvg reconstruct ... --json` into a temporary .y4m that is deleted
 * afterwards), one after the other, so the peak memory of one row is that model's alone: the child's resident-set
 * high-water mark (getrusage maxrss), and the same minus the child's resident set before it loaded the model (Node
 * itself, about 50 MB, and the video reader's process are not in the second number; ffmpeg runs in its own processes
 * and is in neither).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ValueError } from '../errors.js';
import { writeFileAtomic, assertOutputsSafe } from '../io/files.js';
import { READ_OPTIONS, parse, type Out } from './common.js';

export interface CompareRow {
  model: string;
  family: string;
  frames: number;
  height: number;
  width: number;
  psnr: number;
  ssim: number;
  temporal_error: number;
  latent_shape: number[];
  latent_values_per_frame: number;
  compression: number;
  seconds: number;
  frames_per_second: number;
  peak_rss_mb: number;
  peak_rss_over_start_mb: number;
}

const here = dirname(fileURLToPath(import.meta.url));

function runChild(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(here, 'main.js'), ...args], { env: { ...process.env, DCVG_NO_PROGRESS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

export const COMPARE_HELP = `dcvg compare-ae <video> --model A [--weights WA] --compare-model B [--compare-weights WB]
              [--resize WxH] [--start N] [--frames N] [--pad] [--pad-frames] [--tile N|auto] [--json] [--metrics out.json]
  Reconstructs the same frames with both autoencoders (each in a child process of its own, one after the other) and
  prints one row per model: PSNR / SSIM (uint8 RGB, means over frames), latent values per frame and the compression
  ratio (pixel values / latent values), frames/s (encode + decode + scoring), and peak memory (the child's resident-set
  high-water mark, and the same minus its resident set before the model was loaded). --model / --compare-model take
  any model dcvg reconstruct takes (omit --model for the default DC-AE-V; wan2.1-vae or a Wan VAE config / diffusers
  vae/ folder with its weights). A Wan VAE takes 1 + 4k frames: pass --frames N or --pad-frames.`;

export async function cmdCompareAE(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(COMPARE_HELP + '\n');
    return 0;
  }
  const { values: v, positionals } = parse(
    args,
    {
      model: { type: 'string' },
      weights: { type: 'string' },
      'compare-model': { type: 'string' },
      'compare-weights': { type: 'string' },
      json: { type: 'boolean' },
      metrics: { type: 'string' },
      tile: { type: 'string' },
      overlap: { type: 'string' },
      pad: { type: 'boolean' },
      'pad-frames': { type: 'boolean' },
      ...READ_OPTIONS,
    },
    'compare-ae',
  );
  const input = positionals[0];
  if (!input || positionals.length > 1) throw new ValueError('compare-ae needs exactly one input video');
  if (!existsSync(input)) throw new ValueError(`input not found: ${input}`);
  if (!v['compare-model'] && !v['compare-weights']) throw new ValueError('compare-ae needs --compare-model <model> (and --compare-weights W) for the second row');
  if (v.metrics) assertOutputsSafe({ '--metrics': v.metrics }, { input, '--weights': v.weights, '--compare-weights': v['compare-weights'] });
  const common: string[] = [];
  for (const k of ['tile', 'overlap', 'resize', 'crop', 'start', 'frames', 'fps'] as const) if (v[k] !== undefined) common.push(`--${k}`, String(v[k]));
  if (v.pad) common.push('--pad');
  if (v['pad-frames']) common.push('--pad-frames');
  const models: [string, string | undefined, string | undefined][] = [
    ['--model', v.model, v.weights],
    ['--compare-model', v['compare-model'], v['compare-weights']],
  ];
  const tmp = mkdtempSync(join(tmpdir(), 'dcvg-compare-'));
  const rows: CompareRow[] = [];
  try {
    for (const [flag, model, weights] of models) {
      const args = ['reconstruct', input, '-o', join(tmp, `rec${rows.length}.y4m`), '--json', ...common];
      if (model) args.push('--model', model);
      if (weights) args.push('--weights', weights);
      process.stderr.write(`compare-ae: ${model ?? 'default model'}...\n`);
      const r = await runChild(args);
      if (r.code !== 0) {
        const msg = r.stderr.trim().split('\n').pop()?.replace(/^dcvg reconstruct: /, '') ?? `exit code ${r.code}`;
        throw new ValueError(`${flag} ${model ?? '(default)'}: ${msg}`);
      }
      const j = JSON.parse(r.stdout) as CompareRow;
      rows.push({
        model: j.model,
        family: j.family,
        frames: j.frames,
        height: j.height,
        width: j.width,
        psnr: j.psnr,
        ssim: j.ssim,
        temporal_error: j.temporal_error,
        latent_shape: j.latent_shape,
        latent_values_per_frame: j.latent_values_per_frame,
        compression: j.compression,
        seconds: j.seconds,
        frames_per_second: j.frames_per_second,
        peak_rss_mb: j.peak_rss_mb,
        peak_rss_over_start_mb: j.peak_rss_over_start_mb,
      });
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const result = {
    input,
    frames: rows[0]!.frames,
    height: rows[0]!.height,
    width: rows[0]!.width,
    rows,
    protocol:
      'each model in its own child process (dcvg reconstruct), one after the other; PSNR / SSIM on uint8 RGB, means over frames; latent values per frame = latent elements / frames; ' +
      'compression = 3*T*H*W / latent elements; frames/s = frames / (encode + decode + scoring time, weights loading excluded); peak_rss_mb = the child process maxrss; ' +
      'peak_rss_over_start_mb = maxrss minus the resident set before the model was loaded',
  };
  if (v.metrics) writeFileAtomic(v.metrics, JSON.stringify(result, null, 1) + '\n');
  if (v.json) {
    out(JSON.stringify(result, null, 1) + '\n');
    return 0;
  }
  out(`${input}: ${result.frames} frames of ${result.width}x${result.height}\n`);
  out('| model | family | PSNR dB | SSIM | latent values / frame | compression | frames/s | peak RSS MB (over start) |\n|---|---|---:|---:|---:|---:|---:|---:|\n');
  for (const r of rows)
    out(
      `| ${r.model} | ${r.family} | ${r.psnr.toFixed(3)} | ${r.ssim.toFixed(4)} | ${r.latent_values_per_frame} | ${r.compression}x | ${r.frames_per_second} | ${r.peak_rss_mb} (${r.peak_rss_over_start_mb}) |\n`,
    );
  return 0;
}
