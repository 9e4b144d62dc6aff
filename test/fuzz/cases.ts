/**
 * The fuzz areas: each turns (seed, index) into one hostile input (files written into an empty case folder) and the
 * API calls to run on it. Inputs are derived from valid seed files made here (or in a per-run cache: tiny videos
 * from the system ffmpeg, one tiny train-ae run), then mutated.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, loadSafetensors } from '../../src/io/safetensors.js';
import { FormatError, VideoError } from '../../src/errors.js';
import { loadTorchStateDict, readTorchCheckpointInfo } from '../../src/io/torch_checkpoint.js';
import { configFromReference, topologyConfig, type DCAEVConfig } from '../../src/models/dcaev/config.js';
import { DCAEV } from '../../src/models/dcaev/model.js';
import { geometry, loadWeights } from '../../src/models/dcaev/autoencoder.js';
import { parseWanConfig } from '../../src/models/wan/config.js';
import { openVideoReader, probeVideo } from '../../src/io/video.js';
import { TRAIN_DEFAULTS, trainAE } from '../../src/train/ae_trainer.js';
import { sharedDir } from '../helpers.js';
import { makeZip, safetensorsBytes, safetensorsParts, f32Bytes, statePickle, torchZip, Pickler, type StEntry, type TorchTensorSpec, type ZipEntryIn } from './builders.js';
import { cutPoint, mutateBytes, mutateJson, WEIRD_JSON } from './mutate.js';
import type { FuzzRng } from './rng.js';

export interface FuzzCase {
  /** What the input is, in a few words (printed with failures). */
  label: string;
  /** Files to create in the case folder (relative name -> bytes); a name ending in '/' is a folder. */
  files: Record<string, Uint8Array | null>;
  /** Runs the API under test on the case folder. */
  exec(dir: string): Promise<unknown> | unknown;
  /** Extra condition on a typed error (e.g. a VideoError must name the file); returns a problem or null. */
  checkError?(e: Error, dir: string): string | null;
}

export interface Area {
  name: string;
  /** Cases at DCVG_FUZZ_SCALE=1. */
  count: number;
  /** Per-case time limit in the runner's watchdog, seconds. */
  timeoutSec: number;
  make(rng: FuzzRng, index: number, ctx: Ctx): FuzzCase;
}

/** Per-runner context: the cache folder shared by the runners of one fuzz run. */
export interface Ctx {
  cache: string;
}

// ---------------------------------------------------------------------------------------------------------------
// safetensors headers

function baseTensors(rng: FuzzRng): Record<string, StEntry> {
  const t: Record<string, StEntry> = {
    a: { dtype: 'F32', shape: [2, 3], data: f32Bytes([1, 2, 3, 4, 5, 6]) },
    b: { dtype: 'BF16', shape: [4], data: new Uint8Array(8).fill(0x3f) },
  };
  if (rng.chance(0.5)) t.c = { dtype: 'I64', shape: [2], data: new Uint8Array(16).fill(1) };
  if (rng.chance(0.3)) t.e = { dtype: 'F16', shape: [0, 5], data: new Uint8Array(0) };
  if (rng.chance(0.3)) t.s = { dtype: 'F64', shape: [], data: new Uint8Array(8) };
  return t;
}

const ST_EXTRA = ['"F8_E4M3"', '"f32"', '"F32 "', '"BOOL"', '"U64"', '"I8"', '"U8"', '[1e400,0]', '[0,1e400]', '[0,24.0]', '[0,24,0]', '[-24,0]', '[24,0]', '[0,18446744073709551615]'];

function readAllSafetensors(p: string): void {
  const f = SafetensorsFile.open(p);
  try {
    for (const k of f.keys()) {
      f.info(k);
      f.tensor(k).readSync();
      f.float64(k);
    }
  } finally {
    f.close();
  }
  loadSafetensors(p);
}

function safetensorsCase(rng: FuzzRng): FuzzCase {
  const { header, data } = safetensorsParts(baseTensors(rng), rng.chance(0.5) ? { format: 'pt', note: 'x' } : undefined);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const kind = rng.int(0, 9);
  let bytes: Uint8Array;
  let label: string;
  const valid = () => safetensorsBytes(JSON.stringify(header), data);
  switch (kind) {
    case 0:
    case 1: {
      const m = mutateBytes(rng, valid());
      bytes = m.bytes;
      label = `valid file, ${m.what}`;
      break;
    }
    case 2: {
      const text = JSON.stringify(header);
      const len = rng.pick([0n, 1n, 2n, 7n, BigInt(text.length - 1), BigInt(text.length + 8), 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, 100n * 1024n * 1024n]);
      bytes = safetensorsBytes(text, data, len);
      label = `header length field ${len}`;
      break;
    }
    case 3:
    case 4:
    case 5: {
      const m = mutateJson(rng, header, ST_EXTRA);
      bytes = safetensorsBytes(m.text, data);
      label = `header ${m.what}`;
      break;
    }
    case 6: {
      // Offsets: overlapping, out of order, equal, negative, past the end.
      const h = JSON.parse(JSON.stringify(header)) as Record<string, { data_offsets: number[]; shape: number[]; dtype: string }>;
      const a = h[rng.pick(names)]!;
      const b = h[rng.pick(names)]!;
      const how = rng.int(0, 4);
      if (how === 0) b.data_offsets = [...a.data_offsets];
      else if (how === 1) [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
      else if (how === 2) a.data_offsets = [a.data_offsets[0]! + 1, a.data_offsets[1]! + 1];
      else if (how === 3) a.data_offsets = [a.data_offsets[0]! + data.length, a.data_offsets[1]! + data.length];
      else a.data_offsets = [a.data_offsets[1]!, a.data_offsets[0]!];
      bytes = safetensorsBytes(JSON.stringify(h), data);
      label = `offsets ${['shared', 'swapped', 'shifted by 1', 'past the end', 'reversed'][how]}`;
      break;
    }
    case 7: {
      // Duplicate keys (JSON.parse keeps the last), or __proto__ / constructor as tensor names.
      const n = rng.pick(names);
      const entry = JSON.stringify(header[n]);
      const dupName = rng.pick([n, '__proto__', 'constructor', 'hasOwnProperty', '__metadata__']);
      const alt = JSON.stringify({ dtype: 'F32', shape: [1000, 1000], data_offsets: [0, 4000000] });
      const text = JSON.stringify(header).replace(/}$/, `,${JSON.stringify(dupName)}:${rng.chance(0.5) ? entry : alt}}`);
      bytes = safetensorsBytes(text, data);
      label = `extra key ${dupName}`;
      break;
    }
    case 8: {
      const raw = rng.pick(['[]', '"x"', '1', 'null', '{"__metadata__":null}', '{"__metadata__":[1]}', '{"__metadata__":{"a":{"b":1}}}', '{', '', '\u00ff', '{"a":' + '['.repeat(20000) + ']'.repeat(20000) + '}']);
      bytes = safetensorsBytes(raw, data);
      label = `header text ${raw.slice(0, 40)}`;
      break;
    }
    default: {
      // A shape whose numel overflows or is huge while the byte span stays small.
      const h = JSON.parse(JSON.stringify(header)) as Record<string, { data_offsets: number[]; shape: number[]; dtype: string }>;
      const a = h[rng.pick(names)]!;
      a.shape = rng.pick([[2 ** 31, 2 ** 31, 0], [2 ** 53, 2], [65536, 65536, 65536, 65536], [1, -0], [0, 1e300], [3, 2 ** 30]]);
      bytes = safetensorsBytes(JSON.stringify(h), data);
      label = `shape ${JSON.stringify(a.shape)}`;
    }
  }
  return { label, files: { 'x.safetensors': bytes }, exec: (dir) => readAllSafetensors(join(dir, 'x.safetensors')) };
}

// ---------------------------------------------------------------------------------------------------------------
// weight loading (a tiny DC-AE-V's state dict as safetensors or torch zip)

const tinyConfig = (): DCAEVConfig => topologyConfig({ name: 'fuzz-tiny', widths: [4, 8, 8], depths: [0, 1, 1], latentChannels: 4, chunk: 4 });

let tinyShapes: [string, number[]][] | null = null;
function shapesOfTiny(): [string, number[]][] {
  tinyShapes ??= [...new DCAEV(tinyConfig()).shapes()];
  return tinyShapes;
}

function weightsCase(rng: FuzzRng): FuzzCase {
  const shapes = shapesOfTiny().map(([k, s]) => [k, [...s]] as [string, number[]]);
  const asTorch = rng.chance(0.35);
  const victim = rng.int(0, shapes.length - 1);
  const how = rng.int(0, 7);
  let label = '';
  let dtypeOf = (_i: number) => 'F32';
  let fill = (i: number, n: number) => f32Bytes(Array.from({ length: n }, (_, j) => Math.sin(i + j) * 0.1));
  if (how === 0) {
    shapes.splice(victim, 1);
    label = 'a key missing';
  } else if (how === 1) {
    shapes.push([`${shapes[victim]![0]}.extra`, [3]]);
    label = 'an unexpected key';
  } else if (how === 2) {
    const s = shapes[victim]![1];
    s[rng.int(0, Math.max(0, s.length - 1))] = rng.pick([0, 1, 7, 1000]);
    label = `a shape changed to ${JSON.stringify(s)}`;
  } else if (how === 3) {
    shapes[victim]![1] = rng.pick([[], [1, ...shapes[victim]![1]], [shapes[victim]![1].reduce((a, b) => a * b, 1)]]);
    label = `rank changed to ${JSON.stringify(shapes[victim]![1])}`;
  } else if (how === 4) {
    const bad = rng.pick([NaN, Infinity, -Infinity, 3e38]);
    fill = (i, n) => f32Bytes(Array.from({ length: n }, (_, j) => (i === victim && j === 0 ? bad : 0.01)));
    label = `a ${bad} weight`;
  } else if (how === 5) {
    const dt = rng.pick(['F16', 'BF16', 'F64', 'I8', 'U8', 'BOOL', 'I64']);
    dtypeOf = (i) => (i === victim ? dt : 'F32');
    label = `a ${dt} tensor`;
  } else {
    label = 'valid';
  }
  const SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I8: 1, U8: 1, BOOL: 1, I64: 8 };
  let bytes: Uint8Array;
  if (!asTorch) {
    const t: Record<string, StEntry> = {};
    shapes.forEach(([k, s], i) => {
      const n = s.reduce((a, b) => a * b, 1);
      const dt = dtypeOf(i);
      t[k] = { dtype: dt, shape: s, data: dt === 'F32' ? fill(i, n) : new Uint8Array(n * SIZE[dt]!) };
    });
    const { header, data } = safetensorsParts(t);
    bytes = safetensorsBytes(JSON.stringify(header), data);
  } else {
    const storages: Record<string, Uint8Array> = {};
    const specs: [string, TorchTensorSpec][] = shapes.map(([k, s], i) => {
      const n = s.reduce((a, b) => a * b, 1);
      storages[String(i)] = fill(i, n);
      const stride = s.map((_, d) => s.slice(d + 1).reduce((a, b) => a * b, 1));
      return [k, { cls: 'FloatStorage', key: String(i), numel: n, offset: 0, size: s, stride }];
    });
    bytes = torchZip(statePickle(specs, rng.pick(['ema', 'flat', 'model'] as const)), storages).bytes;
  }
  if (rng.chance(0.25)) {
    const m = mutateBytes(rng, bytes);
    bytes = m.bytes;
    label += `, then ${m.what}`;
  }
  const file = asTorch ? 'w.pt' : 'w.safetensors';
  return {
    label: `${asTorch ? 'torch' : 'safetensors'} weights: ${label}`,
    files: { [file]: bytes },
    exec: (dir) => loadWeights(new DCAEV(tinyConfig()), join(dir, file)),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// torch zips and pickles

function torchBase(rng: FuzzRng): { specs: [string, TorchTensorSpec][]; storages: Record<string, Uint8Array> } {
  const specs: [string, TorchTensorSpec][] = [
    ['w', { cls: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [2, 3], stride: [3, 1] }],
    ['wt', { cls: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [3, 2], stride: [1, 3] }],
    ['h', { cls: rng.pick(['HalfStorage', 'BFloat16Storage']), key: '1', numel: 4, offset: 1, size: [3], stride: [1] }],
  ];
  if (rng.chance(0.4)) specs.push(['i', { cls: rng.pick(['LongStorage', 'IntStorage', 'ByteStorage', 'BoolStorage', 'DoubleStorage']), key: '2', numel: 2, offset: 0, size: [2], stride: [1] }]);
  const storages: Record<string, Uint8Array> = { '0': f32Bytes([1, 2, 3, 4, 5, 6]), '1': new Uint8Array(8).fill(0x3c), '2': new Uint8Array(16).fill(1) };
  return { specs, storages };
}

const HUGE = [-1, 2 ** 31, 2 ** 32 + 1, 2 ** 40, 2 ** 53, 2n ** 62n, 2n ** 63n - 1n, 2n ** 64n, -(2n ** 63n)];

function mutateSpec(rng: FuzzRng, t: TorchTensorSpec): string {
  switch (rng.int(0, 6)) {
    case 0:
      t.numel = rng.pick([0, 1, 5, ...HUGE]);
      return `storage numel ${t.numel}`;
    case 1:
      t.offset = rng.pick([3, 6, 7, ...HUGE]);
      return `storage offset ${t.offset}`;
    case 2: {
      // stride 0 (broadcast views) with huge shapes: tiny storage, enormous tensor.
      const n = rng.pick([2 ** 16, 2 ** 20, 2 ** 31, 2 ** 40]);
      t.size = rng.pick([[n, n], [n], [n, 2], [2, n, n]]);
      t.stride = t.size.map(() => 0);
      return `size ${t.size.map(String).join('x')} with stride 0`;
    }
    case 3:
      t.size = rng.pick([[-1], [2, -3], [2 ** 31, 2 ** 31], [0, 2 ** 62], Array(65).fill(1), [], [2, 3, 4], [2n ** 64n]]);
      t.stride = t.size.map((_, i) => (i === 0 ? 1 : 0));
      return `size ${JSON.stringify(t.size.map(String))}`;
    case 4:
      t.stride = rng.pick([[-1, 1], [3, -1], [2 ** 40, 1], [1], [1, 1, 1], [2n ** 63n, 1], [0, 0]]);
      return `stride ${JSON.stringify(t.stride.map(String))}`;
    case 5:
      t.cls = rng.pick(['FooStorage', 'UntypedStorage', 'QInt8Storage', 'ComplexFloatStorage', '__proto__', 'constructor', 'Storage', '']);
      return `storage class torch.${t.cls}`;
    default:
      if (rng.chance(0.5)) {
        t.rebuild = rng.pick([['os', 'system'], ['builtins', 'eval'], ['torch._utils', '_rebuild_parameter'], ['torch', '__proto__'], ['torch._utils', 'constructor'], ['__builtin__', 'getattr']] as [string, string][]);
        return `rebuild function ${t.rebuild.join('.')}`;
      }
      t.key = rng.pick(['missing', '', '../../etc/passwd', '0/../1', '/abs', '1\u0000', 'data.pkl', '..']);
      return `storage key ${JSON.stringify(t.key)}`;
  }
}

/** Opcode-level sequences that stress the pickle machine. */
function hostilePickle(rng: FuzzRng): { pkl: Buffer; what: string } {
  const p = new Pickler().proto();
  const kind = rng.int(0, 9);
  switch (kind) {
    case 0:
      for (let i = 0; i < 5000; i++) p.mark();
      return { pkl: p.raw(0x2e).bytes(), what: '5000 nested MARKs' };
    case 1:
      return { pkl: p.raw(0x68, 200, 0x2e).bytes(), what: 'BINGET of an unset memo slot' };
    case 2:
      return { pkl: p.raw(0x8b, 0xff, 0xff, 0xff, 0x7f).bytes(), what: 'LONG4 with a 2 GB length' };
    case 3:
      return { pkl: p.raw(0x58, 0xff, 0xff, 0xff, 0xff, 0x41).bytes(), what: 'BINUNICODE with a 4 GB length' };
    case 4:
      return { pkl: p.raw(0x7d, 0x5d, 0x4b, 1, 0x73, 0x2e).bytes(), what: 'dict keyed by a list' };
    case 5:
      return { pkl: p.raw(0x74, 0x2e).bytes(), what: 'TUPLE without MARK' };
    case 6:
      return { pkl: p.raw(0x2e).bytes(), what: 'STOP on an empty stack' };
    case 7:
      return { pkl: p.raw(0x7d, 0x30, 0x30, 0x2e).bytes(), what: 'POP past the bottom' };
    case 8: {
      for (let i = 0; i < 3000; i++) p.raw(0x5d);
      for (let i = 0; i < 2999; i++) p.raw(0x61);
      return { pkl: p.raw(0x2e).bytes(), what: '3000 nested lists' };
    }
    default:
      p.raw(0x7d).mark();
      for (let i = 0; i < 3; i++) p.str('k').int(i);
      return { pkl: p.raw(0x75, 0x2e).bytes(), what: 'duplicate dict keys, no tensors' };
  }
}

function readAllTorch(p: string): void {
  readTorchCheckpointInfo(p);
  const sd = loadTorchStateDict(p);
  for (const t of sd.stateDict.values()) t.readSync();
}

function torchCase(rng: FuzzRng): FuzzCase {
  const { specs, storages } = torchBase(rng);
  const layout = rng.pick(['ema', 'flat', 'model'] as const);
  const deflate = rng.chance(0.3);
  const kind = rng.int(0, 9);
  let bytes: Uint8Array;
  let label: string;
  if (kind <= 2) {
    const [name, t] = rng.pick(specs);
    label = `tensor ${name}: ${mutateSpec(rng, t)}`;
    bytes = torchZip(statePickle(specs, layout), storages, deflate).bytes;
  } else if (kind === 3) {
    const m = mutateBytes(rng, statePickle(specs, layout));
    label = `pickle ${m.what}`;
    bytes = torchZip(m.bytes, storages, deflate).bytes;
  } else if (kind === 4) {
    const h = hostilePickle(rng);
    label = `pickle: ${h.what}`;
    bytes = torchZip(h.pkl, storages, deflate).bytes;
  } else if (kind === 5) {
    // Zip header fields: sizes, offsets, name lengths, method, counts.
    const z = torchZip(statePickle(specs, layout), storages, deflate);
    const b = Buffer.from(z.bytes);
    const field = rng.pick([
      ['local method', rng.pick(z.locals) + 8, 2], ['local csize', rng.pick(z.locals) + 18, 4], ['local size', rng.pick(z.locals) + 22, 4],
      ['local name length', rng.pick(z.locals) + 26, 2], ['local extra length', rng.pick(z.locals) + 28, 2],
      ['central method', rng.pick(z.centrals) + 10, 2], ['central crc', rng.pick(z.centrals) + 16, 4], ['central csize', rng.pick(z.centrals) + 20, 4],
      ['central size', rng.pick(z.centrals) + 24, 4], ['central name length', rng.pick(z.centrals) + 28, 2],
      ['central extra length', rng.pick(z.centrals) + 30, 2], ['central offset', rng.pick(z.centrals) + 42, 4],
      ['eocd entries', z.eocd + 10, 2], ['eocd cd size', z.eocd + 12, 4], ['eocd cd offset', z.eocd + 16, 4], ['eocd comment length', z.eocd + 20, 2],
    ] as [string, number, number][]);
    const v = rng.pick([0, 1, 0xffff, 0xffffffff, 0x7fffffff, 99, rng.u32()]);
    if (field[2] === 2) b.writeUInt16LE(v & 0xffff, field[1]);
    else b.writeUInt32LE(v >>> 0, field[1]);
    bytes = b;
    label = `zip ${field[0]} = ${field[2] === 2 ? v & 0xffff : v >>> 0}${deflate ? ' (deflated)' : ''}`;
  } else if (kind === 6) {
    // Entries: storage missing / short / long, data.pkl missing, duplicate entries, two archive folders.
    const how = rng.int(0, 4);
    const st = { ...storages };
    let pkl: Uint8Array = statePickle(specs, layout);
    if (how === 0) delete st['0'];
    else if (how === 1) st['0'] = st['0']!.subarray(0, rng.int(0, 23));
    else if (how === 2) st['0'] = Buffer.concat([st['0']!, Buffer.alloc(rng.int(1, 64))]);
    else if (how === 3) pkl = new Uint8Array(0);
    const files: ZipEntryIn[] = [{ name: 'archive/data.pkl', data: pkl, deflate }];
    for (const [k, v] of Object.entries(st)) files.push({ name: `archive/data/${k}`, data: v, deflate });
    // A second entry of the same name (which one wins?), or one under another top folder.
    if (how === 4) files.push(rng.chance(0.5) ? { name: 'archive/data/0', data: f32Bytes([9, 9, 9, 9, 9, 9]) } : { name: 'other/data.pkl', data: pkl });
    files.push({ name: 'archive/version', data: Buffer.from('3\n') });
    bytes = makeZip(files).bytes;
    label = `entries: ${['storage 0 missing', 'storage 0 short', 'storage 0 long', 'empty data.pkl', 'duplicate'][how]}`;
  } else {
    const m = mutateBytes(rng, torchZip(statePickle(specs, layout), storages, deflate).bytes);
    bytes = m.bytes;
    label = `whole file ${m.what}${deflate ? ' (deflated)' : ''}`;
  }
  return { label, files: { 'c.pt': bytes }, exec: (dir) => readAllTorch(join(dir, 'c.pt')) };
}

// ---------------------------------------------------------------------------------------------------------------
// model configs (DC-AE-V reference JSON, Wan JSON)

function loadJson(rel: string): unknown {
  return JSON.parse(readFileSync(join(sharedDir, 'fixtures', rel), 'utf8'));
}

let configSeeds: { dcaev: unknown[]; wan: unknown[] } | null = null;
function seeds(): { dcaev: unknown[]; wan: unknown[] } {
  if (!configSeeds) {
    const dcaev = ['chunk_causal_small', 'causal_small', 'non_causal_small'].map((n) => (loadJson(`dc-ae-v/${n}.json`) as { config_overrides: unknown }).config_overrides);
    const wanAll = loadJson('wan/wan_fixtures.json') as Record<string, { config: unknown }>;
    configSeeds = { dcaev, wan: Object.values(wanAll).map((e) => e.config) };
  }
  return configSeeds;
}

function configCase(rng: FuzzRng): FuzzCase {
  const isWan = rng.chance(0.4);
  const root = rng.pick(isWan ? seeds().wan : seeds().dcaev);
  const m = rng.chance(0.1) ? { text: rng.pick(WEIRD_JSON), what: 'whole config replaced' } : mutateJson(rng, root, ['100000', '1000000000', '[1000000,1000000]', '[0,0,0]']);
  const text = m.text;
  return {
    label: `${isWan ? 'wan' : 'dc-ae-v'} config: ${m.what}`,
    files: { 'config.json': Buffer.from(text) },
    exec: (dir) => {
      const j = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as unknown;
      if (isWan) return parseWanConfig(j);
      const cfg = configFromReference(j, 'fuzz');
      const model = new DCAEV(cfg);
      model.shapes();
      model.encoder.parameterCount();
      return geometry(model);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// train-ae checkpoint metadata (dcvg_train), resumed for one more step

function runQuiet(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString().slice(-500)}`);
}

/** A finished one-step train-ae run (checkpoint + log) and its data folder, made once per fuzz run. */
let trainedMemo: Promise<{ run: string; data: string }> | null = null;
export function trainedRun(ctx: Ctx): Promise<{ run: string; data: string }> {
  trainedMemo ??= makeTrainedRun(ctx);
  return trainedMemo;
}

async function makeTrainedRun(ctx: Ctx): Promise<{ run: string; data: string }> {
  const base = join(ctx.cache, 'train');
  const run = join(base, 'run');
  const data = join(base, 'data');
  if (existsSync(base)) return { run, data };
  const tmp = join(ctx.cache, `train-tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(join(tmp, 'data'), { recursive: true });
  for (let i = 0; i < 2; i++)
    runQuiet('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=s=16x16:r=10:d=1.6,hue=h=${i * 90}`, '-frames:v', '16', '-pix_fmt', 'yuv444p', '-y', join(tmp, 'data', `c${i}.y4m`)]);
  const cfg = topologyConfig({ name: 'fuzz-tiny', widths: [4, 8, 8], depths: [0, 1, 1], latentChannels: 4, chunk: 4 });
  await trainAE({ ...TRAIN_DEFAULTS, model: cfg, data: join(tmp, 'data'), out: join(tmp, 'run'), steps: 1, frames: 4, crop: 16, batch: 1, holdout: 1, ckptEvery: 1, evalEvery: 100, warmup: 0 });
  // The checkpoint names its data folder by absolute path: point it at the final place, then publish atomically.
  rewriteTrainMeta(join(tmp, 'run', 'checkpoint.safetensors'), (m) => ({ ...m, options: { ...(m.options as object), data } }));
  try {
    renameSync(tmp, base);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process published first
  }
  return { run, data };
}

/** Header JSON and data section of a safetensors file. */
function splitSafetensors(b: Buffer): { header: Record<string, unknown>; data: Buffer } {
  const hlen = Number(b.readBigUInt64LE(0));
  return { header: JSON.parse(b.subarray(8, 8 + hlen).toString('utf8')) as Record<string, unknown>, data: b.subarray(8 + hlen) };
}

function rewriteTrainMeta(path: string, f: (m: Record<string, unknown>) => Record<string, unknown>): void {
  const { header, data } = splitSafetensors(readFileSync(path));
  const md = header.__metadata__ as Record<string, string>;
  md.dcvg_train = JSON.stringify(f(JSON.parse(md.dcvg_train!) as Record<string, unknown>));
  writeFileSync(path, safetensorsBytes(JSON.stringify(header), data));
}

function trainMetaCase(rng: FuzzRng, ctx: Ctx): FuzzCase & { prepare(): Promise<void> } {
  let files: Record<string, Uint8Array | null> = {};
  let label = '';
  const c: FuzzCase & { prepare(): Promise<void> } = {
    label: '',
    files,
    prepare: async () => {
      const { run } = await trainedRun(ctx);
      const { header, data } = splitSafetensors(readFileSync(join(run, 'checkpoint.safetensors')));
      const md = header.__metadata__ as Record<string, string>;
      const meta = JSON.parse(md.dcvg_train!) as Record<string, unknown>;
      const kind = rng.int(0, 9);
      if (kind <= 6) {
        const m = mutateJson(rng, meta, ['"/nonexistent/dir"', '"."', '"checkpoint.safetensors"', '1e9', '[1,2]', '[0,0,0,0]']);
        md.dcvg_train = m.text;
        label = `dcvg_train ${m.what}`;
      } else if (kind === 7) {
        const t = JSON.stringify(meta);
        md.dcvg_train = t.slice(0, cutPoint(rng, t.length));
        label = `dcvg_train truncated to ${md.dcvg_train.length} chars`;
      } else if (kind === 8) {
        const raw = rng.pick(WEIRD_JSON);
        md.dcvg_train = raw;
        label = `dcvg_train = ${raw}`;
      } else {
        // Metadata fine, tensors damaged (a key renamed, so resume finds one missing).
        const keys = Object.keys(header).filter((k) => k !== '__metadata__');
        const k = rng.pick(keys);
        header[`${k}.renamed`] = header[k];
        delete header[k];
        label = `checkpoint tensor ${k} renamed`;
      }
      files = { 'run/': null, 'run/checkpoint.safetensors': safetensorsBytes(JSON.stringify(header), data), 'run/train.jsonl': readFileSync(join(run, 'train.jsonl')) };
      c.files = files;
      c.label = label;
    },
    exec: async (dir) => {
      const o = { out: join(dir, 'run'), resume: true, steps: 2 };
      return trainAE(o as unknown as Parameters<typeof trainAE>[0], {});
    },
  };
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// videos (made with the system ffmpeg, then damaged)

const VIDEO_SEEDS: [string, string[]][] = [
  ['good.mp4', ['-f', 'lavfi', '-i', 'testsrc2=s=32x32:r=10:d=0.6', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast']],
  ['size130x98.mp4', ['-f', 'lavfi', '-i', 'testsrc2=s=130x98:r=10:d=0.4', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast']],
  ['odd33x17.mkv', ['-f', 'lavfi', '-i', 'testsrc2=s=64x64:r=10:d=0.4', '-vf', 'scale=33:17', '-pix_fmt', 'yuv444p', '-c:v', 'libx264', '-preset', 'ultrafast']],
  ['one.mp4', ['-f', 'lavfi', '-i', 'testsrc2=s=32x32:r=10', '-frames:v', '1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264']],
  ['tiny.gif', ['-f', 'lavfi', '-i', 'testsrc2=s=16x16:r=10:d=0.4']],
  ['tiny.y4m', ['-f', 'lavfi', '-i', 'testsrc2=s=16x16:r=10:d=0.4', '-pix_fmt', 'yuv420p']],
  ['audio.m4a', ['-f', 'lavfi', '-i', 'sine=d=0.3', '-c:a', 'aac']],
  ['audio.wav', ['-f', 'lavfi', '-i', 'sine=d=0.3']],
];

export function videoSeeds(ctx: Ctx): string {
  const dir = join(ctx.cache, 'videos');
  if (existsSync(dir)) return dir;
  const tmp = join(ctx.cache, `videos-tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(tmp, { recursive: true });
  for (const [name, args] of VIDEO_SEEDS) runQuiet('ffmpeg', ['-v', 'error', ...args, '-y', join(tmp, name)]);
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process published first
  }
  return dir;
}

/** Makes the shared seed files before any runner starts (children then only read them). */
export async function prepareCache(ctx: Ctx): Promise<void> {
  videoSeeds(ctx);
  await trainedRun(ctx);
}

async function readWholeVideo(p: string, rng: FuzzRng): Promise<void> {
  if (rng.chance(0.5)) await probeVideo(p, { countFrames: rng.chance(0.5) });
  const opts = {
    strict: rng.chance(0.3),
    maxFrames: rng.chance(0.3) ? rng.int(0, 3) : undefined,
    resize: rng.chance(0.2) ? { width: 16, height: 16 } : undefined,
    onWarning: () => {},
  };
  const r = await openVideoReader(p, opts);
  try {
    for (;;) {
      const f = await r.readFrames(rng.int(1, 4));
      if (!f) break;
      if (f.length % r.frameBytes) throw new Error(`frame bytes ${f.length} not a multiple of ${r.frameBytes}`);
    }
  } finally {
    await r.close();
  }
}

function videoCase(rng: FuzzRng, ctx: Ctx): FuzzCase {
  const dir = videoSeeds(ctx);
  const seed = rng.pick(VIDEO_SEEDS.map((s) => s[0]));
  const src = readFileSync(join(dir, seed));
  const kind = rng.int(0, 9);
  let bytes: Uint8Array;
  let label: string;
  let name = seed;
  if (kind <= 1) {
    bytes = src;
    label = 'unchanged';
  } else if (kind <= 4) {
    const c = cutPoint(rng, src.length);
    bytes = src.subarray(0, c);
    label = `truncated to ${c} of ${src.length} bytes`;
  } else if (kind <= 7) {
    const m = mutateBytes(rng, src);
    bytes = m.bytes;
    label = m.what;
  } else if (kind === 8) {
    bytes = rng.chance(0.5) ? new Uint8Array(0) : rng.bytes(rng.int(1, 4096));
    label = `${bytes.length} random bytes`;
  } else {
    // The right bytes under the wrong extension.
    name = `renamed${rng.pick(['.mp4', '.gif', '.y4m', '.png', '.txt', ''])}`;
    bytes = src;
    label = 'renamed';
  }
  const file = `in ${name}`; // a space in every path
  return {
    label: `${seed}: ${label}`,
    files: { [file]: bytes },
    exec: (d) => readWholeVideo(join(d, file), rng),
    checkError: (e) => {
      if (!(e instanceof VideoError) && !(e instanceof FormatError)) return `expected a VideoError, got ${e.constructor.name}`;
      if (!e.message.includes(file)) return 'error message does not name the file';
      return null;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------

export const AREAS: Area[] = [
  { name: 'safetensors', count: 400, timeoutSec: 20, make: (r) => safetensorsCase(r) },
  { name: 'weights', count: 80, timeoutSec: 20, make: (r) => weightsCase(r) },
  { name: 'torch', count: 400, timeoutSec: 20, make: (r) => torchCase(r) },
  { name: 'config', count: 250, timeoutSec: 4, make: (r) => configCase(r) },
  { name: 'trainmeta', count: 12, timeoutSec: 60, make: (r, _i, ctx) => trainMetaCase(r, ctx) },
  { name: 'video', count: 30, timeoutSec: 30, make: (r, _i, ctx) => videoCase(r, ctx) },
];
