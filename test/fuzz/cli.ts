/**
 * CLI cases of the fuzz suite: hostile inputs from the in-process areas fed to `dcvg` commands, and a second campaign
 * of hostile paths (symlinked / directory / existing outputs, FIFOs, unicode paths, empty files, folders where files
 * are expected, concurrent writers). Each runs `node dist/src/cli/main.js` in a child with a time limit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configToReference, topologyConfig } from '../../src/models/dcaev/config.js';
import { DCAEV } from '../../src/models/dcaev/model.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { sharedDir } from '../helpers.js';
import { AREAS, videoSeeds, type Ctx } from './cases.js';
import { f32Bytes, safetensorsBytes, safetensorsParts, statePickle, torchZip, type StEntry } from './builders.js';
import { compareSnapshots, RAW_ERROR_RE, snapshot } from './harness.js';
import { caseRng, type FuzzRng } from './rng.js';
import { VMEM_KB } from './parent.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

export interface CliRun {
  status: number | null;
  signal: string | null;
  timedOut: boolean;
  stderr: string;
  stdout: string;
}

/** Runs dcvg (cwd = the case folder) with a time limit and the fuzz address-space limit. */
export function runCli(args: string[], cwd: string, timeoutSec: number): Promise<CliRun> {
  return new Promise((done) => {
    const proc = spawn('bash', ['-c', `ulimit -v ${VMEM_KB}; exec "$0" "$@"`, process.execPath, MAIN, ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: '1', NODE_NO_WARNINGS: '1' },
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    proc.stdout.on('data', (b: Buffer) => (stdout = (stdout + b.toString()).slice(-20000)));
    proc.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-20000)));
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutSec * 1000);
    proc.on('close', (status, signal) => {
      clearTimeout(timer);
      done({ status, signal, timedOut, stderr, stdout });
    });
  });
}

/** Problems with how a CLI run ended: a signal, a hang, an odd status, or an unclear error line. */
export function cliProblems(r: CliRun): string[] {
  if (r.timedOut) return ['hang (timed out)'];
  if (r.signal) return [`crash: killed by ${r.signal}`];
  if (r.status === null || ![0, 1, 2, 3].includes(r.status)) return [`crash: exit status ${r.status}`];
  if (r.status === 0) return [];
  // 3: info's "checkpoint does not match the model", reported on stdout.
  if (r.status === 3 && !r.stderr.trim() && r.stdout.trim()) return [];
  const lines = r.stderr.split('\n').map((l) => l.trimEnd()).filter((l) => l && !l.startsWith('train-ae: ') && !/^\s*[\r]/.test(l));
  const last = lines[lines.length - 1] ?? '';
  const p: string[] = [];
  if (!last) p.push(`exit status ${r.status} with nothing on stderr`);
  else if (!last.startsWith('dcvg ')) p.push(`last stderr line is not a dcvg error: ${last.slice(0, 120)}`);
  const raw = RAW_ERROR_RE.exec(r.stderr);
  if (raw) p.push(`stderr carries raw text "${raw[0].trim()}"`);
  return p;
}

export interface CliCase {
  name: string;
  timeoutSec: number;
  /** Writes the inputs into dir; returns the argument lists to run there (several run concurrently). */
  setup(dir: string, ctx: Ctx): Promise<{ runs: string[][]; label: string; check?: (dir: string, rs: CliRun[]) => string[] }> | { runs: string[][]; label: string; check?: (dir: string, rs: CliRun[]) => string[] };
}

// ---------------------------------------------------------------------------------------------------------------
// fixtures made here

const tinyCfg = () => topologyConfig({ name: 'fuzz-tiny', widths: [4, 8, 8], depths: [0, 1, 1], latentChannels: 4, chunk: 4 });

function writeTinyModel(dir: string): { cfg: string; weights: string } {
  const cfg = tinyCfg();
  writeFileSync(join(dir, 'tiny.json'), JSON.stringify({ name: 'fuzz-tiny', ...configToReference(cfg) }));
  const t: Record<string, StEntry> = {};
  for (const [k, s] of new DCAEV(cfg).shapes()) {
    const n = s.reduce((a, b) => a * b, 1);
    t[k] = { dtype: 'F32', shape: s, data: f32Bytes(Array.from({ length: n }, (_, i) => Math.sin(i) * 0.05)) };
  }
  const { header, data } = safetensorsParts(t);
  writeFileSync(join(dir, 'tiny.safetensors'), safetensorsBytes(JSON.stringify(header), data));
  return { cfg: 'tiny.json', weights: 'tiny.safetensors' };
}

function writeInputTensor(dir: string, name = 'in.safetensors'): string {
  const n = 3 * 4 * 16 * 16;
  const { header, data } = safetensorsParts({ input: { dtype: 'F32', shape: [1, 3, 4, 16, 16], data: f32Bytes(Array.from({ length: n }, (_, i) => Math.sin(i / 7) * 0.5)) } });
  writeFileSync(join(dir, name), safetensorsBytes(JSON.stringify(header), data));
  return name;
}

function smallTorch(dir: string, name = 'ok.pt'): string {
  const pkl = statePickle([['w', { cls: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [2, 3], stride: [3, 1] }]], 'ema');
  writeFileSync(join(dir, name), torchZip(pkl, { '0': f32Bytes([1, 2, 3, 4, 5, 6]) }).bytes);
  return name;
}

/** A latent file for the default model, with its metadata or tensor made hostile. */
function hostileLatent(rng: FuzzRng): { bytes: Buffer; what: string } {
  const meta: Record<string, string> = { format: 'dcvideogen-latent', model: 'dcvg-ae-small-f32t4c32-w128', latent_scaled: 'false', num_frames: '6', height: '32', width: '32', fps: '10' };
  let shape = [1, 32, 2, 1, 1];
  let fill = (i: number) => Math.sin(i) * 0.1;
  const k = rng.int(0, 3);
  let what: string;
  if (k === 0) {
    const key = rng.pick(['num_frames', 'height', 'width', 'fps', 'latent_scaled']);
    meta[key] = rng.pick(['-1', '0', '1e9', 'NaN', '', '2.5', '99999', 'true']);
    what = `metadata ${key}=${meta[key]}`;
  } else if (k === 1) {
    shape = rng.pick([[1, 32, 0, 1, 1], [1, 31, 2, 1, 1], [32, 2, 1, 1], [1, 32, 2, 0, 1], [2, 32, 1, 1, 1], [1, 32, 2, 1, 1, 1]]);
    what = `latent shape ${JSON.stringify(shape)}`;
  } else if (k === 2) {
    const bad = rng.pick([NaN, Infinity, 1e30]);
    fill = (i) => (i === 3 ? bad : 0.1);
    what = `latent holds ${bad}`;
  } else {
    delete meta.format;
    meta.model = rng.pick(['', 'no-such-model', '../../etc/passwd']);
    what = `metadata model=${JSON.stringify(meta.model)}`;
  }
  const n = shape.reduce((a, b) => a * b, 1);
  const { header, data } = safetensorsParts({ latent: { dtype: 'F32', shape, data: f32Bytes(Array.from({ length: n }, (_, i) => fill(i))) } }, meta);
  return { bytes: safetensorsBytes(JSON.stringify(header), data), what };
}

/** Writes case `index` of an in-process area into dir; returns its main file and label. */
async function areaInput(area: string, seed: number, index: number, dir: string, ctx: Ctx): Promise<{ file: string; label: string }> {
  const a = AREAS.find((x) => x.name === area)!;
  const c = a.make(caseRng(seed, `cli-${area}`, index), index, ctx) as ReturnType<typeof a.make> & { prepare?: () => Promise<void> };
  await c.prepare?.();
  let main = '';
  for (const [name, bytes] of Object.entries(c.files)) {
    if (name.endsWith('/')) mkdirSync(join(dir, name), { recursive: true });
    else {
      writeFileSync(join(dir, name), bytes!);
      main ||= name;
    }
  }
  return { file: main, label: `${area} input: ${c.label}` };
}

// ---------------------------------------------------------------------------------------------------------------
// the cases

export function cliCases(seed: number): CliCase[] {
  const cases: CliCase[] = [];
  const fromArea = (name: string, area: string, n: number, timeoutSec: number, args: (file: string, dir: string) => string[]) => {
    for (let i = 0; i < n; i++)
      cases.push({
        name: `${name}-${i}`,
        timeoutSec,
        setup: async (dir, ctx) => {
          const { file, label } = await areaInput(area, seed, i, dir, ctx);
          return { runs: [args(file, dir)], label };
        },
      });
  };
  fromArea('convert-torch', 'torch', 3, 20, (f) => ['convert', f, '-o', 'out.safetensors']);
  fromArea('convert-weights', 'weights', 2, 20, (f) => ['convert', f, '-o', 'out.safetensors', '--dtype', 'bf16']);
  fromArea('info-weights', 'weights', 2, 20, (f, dir) => ['info', '--model', writeTinyModel(dir).cfg, '--weights', f, '--json']);
  fromArea('info-safetensors', 'safetensors', 2, 20, (f) => ['info', '--model', 'dc-ae-v-f32t4c32-1.0', '--weights', f]);
  fromArea('info-config', 'config', 3, 20, (f) => ['info', '--model', f]);
  fromArea('encode-video', 'video', 3, 40, (f) => ['encode', f, '-o', 'out.safetensors']);
  fromArea('encode-weights', 'weights', 2, 30, (f, dir) => ['encode', writeInputTensor(dir), '-o', 'out.safetensors', '--model', writeTinyModel(dir).cfg, '--weights', f]);
  fromArea('resume', 'trainmeta', 2, 60, () => ['train-ae', '--resume', '--out', 'run', '--steps', '2']);
  for (let i = 0; i < 3; i++)
    cases.push({
      name: `decode-latent-${i}`,
      timeoutSec: 40,
      setup: (dir) => {
        const l = hostileLatent(caseRng(seed, 'cli-latent', i));
        writeFileSync(join(dir, 'lat.safetensors'), l.bytes);
        return { runs: [['decode', 'lat.safetensors', '-o', i === 2 ? 'out.safetensors' : 'out.mp4']], label: l.what };
      },
    });
  for (let i = 0; i < 2; i++)
    cases.push({
      name: `run-wan-config-${i}`,
      timeoutSec: 40,
      setup: async (dir, ctx) => {
        // Only Wan configs: draw config cases until one is a Wan one.
        let j = 0;
        let got: { file: string; label: string } | null = null;
        for (; j < 40 && !got; j++) {
          const sub = join(dir, `c${j}`);
          mkdirSync(sub);
          const r = await areaInput('config', seed + i, j, sub, ctx);
          if (r.label.includes('wan config')) got = { file: join(`c${j}`, r.file), label: r.label };
        }
        const w = 'wan_t2v_base_tiny';
        copyFileSync(join(sharedDir, 'fixtures', 'wan', `${w}.weights.safetensors`), join(dir, 'w.safetensors'));
        copyFileSync(join(sharedDir, 'fixtures', 'wan', `${w}.io.safetensors`), join(dir, 'io.safetensors'));
        return { runs: [['run', 'wan', '--config', got!.file, '--weights', 'w.safetensors', '--inputs', 'io.safetensors', '-o', 'out.safetensors']], label: got!.label };
      },
    });
  cases.push(...secondCampaign());
  return cases;
}

/** Hostile paths rather than hostile bytes. */
function secondCampaign(): CliCase[] {
  const c = (name: string, timeoutSec: number, setup: CliCase['setup']): CliCase => ({ name, timeoutSec, setup });
  const video = (dir: string, ctx: Ctx, name = 'in.mp4') => {
    copyFileSync(join(videoSeeds(ctx), 'good.mp4'), join(dir, name));
    return name;
  };
  return [
    c('output-symlink-to-input', 20, (dir) => {
      const pt = smallTorch(dir);
      symlinkSync(pt, join(dir, 'out.safetensors'));
      return { runs: [['convert', pt, '-o', 'out.safetensors']], label: 'convert -o a symlink pointing at the input' };
    }),
    c('output-hardlink-to-input', 40, (dir, ctx) => {
      const v = video(dir, ctx);
      linkSync(join(dir, v), join(dir, 'out.mp4'));
      return { runs: [['reconstruct', v, '-o', 'out.mp4']], label: 'reconstruct -o a hard link of the input' };
    }),
    c('output-same-as-input', 20, (dir) => {
      const i = writeInputTensor(dir);
      const m = writeTinyModel(dir);
      return { runs: [['encode', i, '-o', i, '--model', m.cfg, '--weights', m.weights]], label: 'encode x -o x' };
    }),
    c('output-symlink-elsewhere', 20, (dir) => {
      const pt = smallTorch(dir);
      writeFileSync(join(dir, 'precious.txt'), 'do not overwrite');
      symlinkSync('precious.txt', join(dir, 'out.safetensors'));
      return {
        runs: [['convert', pt, '-o', 'out.safetensors']],
        label: 'convert -o a symlink to an unrelated file',
        // Whatever happens, the file the link points at must keep its bytes.
        check: (d) => (snapshot(d).get('precious.txt') === undefined ? ['the symlink target was removed'] : []),
      };
    }),
    c('output-is-directory', 20, (dir) => {
      const pt = smallTorch(dir);
      mkdirSync(join(dir, 'out.safetensors'));
      writeFileSync(join(dir, 'out.safetensors', 'keep'), 'x');
      return { runs: [['convert', pt, '-o', 'out.safetensors']], label: 'convert -o an existing directory' };
    }),
    c('output-dir-missing', 20, (dir) => ({ runs: [['convert', smallTorch(dir), '-o', 'no/such/dir/out.safetensors']], label: 'convert -o into a missing folder' })),
    c('decode-output-is-directory', 40, (dir) => {
      const l = hostileLatent(caseRng(1, 'x', 0));
      writeFileSync(join(dir, 'lat.safetensors'), l.bytes);
      mkdirSync(join(dir, 'out.mp4'));
      return { runs: [['decode', 'lat.safetensors', '-o', 'out.mp4']], label: 'decode -o an existing directory named .mp4' };
    }),
    c('fifo-video', 20, (dir) => {
      mkfifo(join(dir, 'in.mp4'));
      return { runs: [['encode', 'in.mp4', '-o', 'out.safetensors']], label: 'encode a FIFO' };
    }),
    c('fifo-weights', 8, (dir) => {
      mkfifo(join(dir, 'w.safetensors'));
      return { runs: [['info', '--model', writeTinyModel(dir).cfg, '--weights', 'w.safetensors']], label: 'info --weights a FIFO' };
    }),
    c('fifo-convert', 8, (dir) => {
      mkfifo(join(dir, 'c.pt'));
      return { runs: [['convert', 'c.pt', '-o', 'out.safetensors']], label: 'convert a FIFO' };
    }),
    c('unicode-paths', 40, (dir, ctx) => {
      mkdirSync(join(dir, 'dossier é'));
      const v = video(dir, ctx, 'dossier é/vidéo 視頻 #1.mp4');
      return { runs: [['encode', v, '-o', 'dossier é/latent ü.safetensors']], label: 'unicode and spaces in paths', check: (_d, rs) => (rs[0]!.status === 0 ? [] : ['failed on a unicode path']) };
    }),
    c('empty-files', 30, (dir) => {
      for (const f of ['e.pt', 'e.safetensors', 'e.json', 'e.mp4']) writeFileSync(join(dir, f), '');
      return {
        runs: [['convert', 'e.pt', '-o', 'o1.safetensors'], ['info', '--model', 'e.json'], ['encode', 'e.mp4', '-o', 'o2.safetensors'], ['decode', 'e.safetensors', '-o', 'o3.mp4'], ['info', '--model', 'dc-ae-v-f32t4c32-1.0', '--weights', 'e.safetensors']],
        label: '0-byte inputs to convert / info / encode / decode',
      };
    }),
    c('directory-as-file', 30, (dir) => {
      mkdirSync(join(dir, 'd.pt'));
      mkdirSync(join(dir, 'd.safetensors'));
      mkdirSync(join(dir, 'd.json'));
      return {
        runs: [['convert', 'd.pt', '-o', 'o1.safetensors'], ['info', '--model', 'd.json'], ['decode', 'd.safetensors', '-o', 'o2.mp4'], ['info', '--model', 'dc-ae-v-f32t4c32-1.0', '--weights', 'd.safetensors'], ['run', 'wan', '--config', 'd.json', '--weights', 'd.safetensors', '--inputs', 'd.safetensors', '-o', 'o3.safetensors'], ['train-ae', '--resume', '--out', 'd.pt']],
        label: 'directories where files are expected',
      };
    }),
    c('resume-empty-checkpoint', 20, (dir) => {
      mkdirSync(join(dir, 'run'));
      writeFileSync(join(dir, 'run', 'checkpoint.safetensors'), '');
      return { runs: [['train-ae', '--resume', '--out', 'run']], label: 'train-ae --resume on a 0-byte checkpoint' };
    }),
    c('concurrent-writers', 30, (dir) => {
      const pt = smallTorch(dir);
      return {
        runs: [0, 1, 2].map(() => ['convert', pt, '-o', 'same.safetensors']),
        label: 'three converts writing the same output at once',
        check: (d, rs) => {
          const p: string[] = [];
          if (rs.some((r) => r.status === 0)) {
            try {
              SafetensorsFile.open(join(d, 'same.safetensors')).close();
            } catch (e) {
              p.push(`the output is not a valid file: ${(e as Error).message}`);
            }
          }
          return p;
        },
      };
    }),
  ];
}

function mkfifo(path: string): void {
  if (spawnSync('mkfifo', [path], { stdio: 'ignore' }).status !== 0) throw new Error(`mkfifo ${path} failed`);
}

/** Runs one CLI case in dir: every run concurrently, then the shared checks. */
export async function runCliCase(c: CliCase, dir: string, ctx: Ctx): Promise<{ label: string; problems: string[]; runs: CliRun[] }> {
  const s = await c.setup(dir, ctx);
  const before = snapshot(dir);
  const rs = await Promise.all(s.runs.map((a) => runCli(a, dir, c.timeoutSec)));
  const problems: string[] = [];
  rs.forEach((r, i) => {
    for (const p of cliProblems(r)) problems.push(`${s.runs.length > 1 ? `[${s.runs[i]!.slice(0, 2).join(' ')}] ` : ''}${p}`);
  });
  const failed = rs.some((r) => r.status !== 0);
  const outputs = new Set(s.runs.flatMap((a) => a.flatMap((x, i) => (a[i - 1] === '-o' || a[i - 1] === '--out' ? [x] : []))));
  const isOutput = (rel: string) => [...outputs].some((o) => rel === o || rel.startsWith(`${o}/`));
  const allOk = !failed;
  problems.push(
    ...compareSnapshots(before, snapshot(dir), {
      failed,
      // A successful run may write its own outputs (train-ae: its run folder); a failed one nothing at all.
      mayChange: (rel) => allOk && isOutput(rel),
      mayAdd: (rel) => rs.some((r) => r.status === 0) && isOutput(rel),
    }),
  );
  if (s.check) problems.push(...s.check(dir, rs));
  return { label: s.label, problems, runs: rs };
}
