/**
 * The shapes world as the adapt study uses it (../shared/docs/shapes-world.md): rendered splits of videos with
 * captions, the fixed evaluation prompt set, a SentencePiece-unigram tokenizer built from the training captions' words,
 * and the semantic score of generated clips.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { openVideoWriter } from '../io/video.js';
import {
  SHAPES_FRAMES,
  SHAPES_SIZE,
  isHeldOut,
  randomShapesVideo,
  renderShapes,
  scoreShapes,
  shapesAccuracy,
  shapesCaption,
  type ShapesVideo,
} from '../metrics/shapes_world.js';
import { PieceType, toTokenizerJson, type Piece, type TokenizerModel } from '../text/index.js';
import { ValueError } from '../errors.js';
import { Rng } from '../tensor/random.js';

export type Split = 'train' | 'held-out';

export interface RenderedVideo {
  file: string;
  caption: string;
  attrs: Omit<ShapesVideo, 'start'>;
}

/** The videos of one split, deterministic in (seed, split): training videos never hold a held-out triple and vice versa. */
export function sampleSplit(count: number, seed: number, split: Split): ShapesVideo[] {
  const rng = new Rng(seed);
  const out: ShapesVideo[] = [];
  while (out.length < count) {
    const v = randomShapesVideo(rng, { trainOnly: split === 'train' });
    if (split === 'held-out' && !isHeldOut(v)) continue;
    out.push(v);
  }
  return out;
}

/**
 * Renders a split into `dir` (a new folder, made whole or not at all: written beside it and renamed): one lossless
 * clip per video (`NNNNN.mp4`, x264 4:4:4 at CRF 0) with its caption as `NNNNN.txt` (what train-ae and `dcvg latents`
 * read), and `videos.json` (captions and attributes). The one place the study makes data: when `dcvg data shapes`
 * exists, this calls it instead.
 */
export async function renderSplit(dir: string, count: number, seed: number, split: Split): Promise<RenderedVideo[]> {
  const vids = sampleSplit(count, seed, split);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const list: RenderedVideo[] = [];
  for (let i = 0; i < vids.length; i++) {
    const v = vids[i]!;
    const stem = String(i).padStart(5, '0');
    const w = await openVideoWriter(join(tmp, `${stem}.mp4`), { width: SHAPES_SIZE, height: SHAPES_SIZE, fps: 8, pixFmt: 'yuv444p', crf: 0 });
    try {
      await w.write(renderShapes(v));
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
    const caption = shapesCaption(v);
    writeFileSync(join(tmp, `${stem}.txt`), caption + '\n');
    const { start: _s, ...attrs } = v;
    list.push({ file: `${stem}.mp4`, caption, attrs });
  }
  writeFileSync(join(tmp, 'videos.json'), JSON.stringify({ split, seed, count, videos: list }, null, 1) + '\n');
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return list;
}

export interface EvalPrompt {
  caption: string;
  split: Split;
  attrs: Omit<ShapesVideo, 'start'>;
}

/** The fixed prompt set of every evaluation: the first captions of each split (distinct ones), with its seeds. */
export function evalPromptSet(train: RenderedVideo[], heldOut: RenderedVideo[], nTrain: number, nHeld: number): EvalPrompt[] {
  const pick = (vs: RenderedVideo[], n: number, split: Split) => {
    const seen = new Set<string>();
    const out: EvalPrompt[] = [];
    for (const v of vs) {
      if (out.length === n) break;
      if (seen.has(v.caption)) continue;
      seen.add(v.caption);
      out.push({ caption: v.caption, split, attrs: v.attrs });
    }
    if (out.length < n) throw new ValueError(`study: only ${out.length} distinct ${split} captions for ${n} evaluation prompts; render more videos`);
    return out;
  };
  return [...pick(train, nTrain, 'train'), ...pick(heldOut, nHeld, 'held-out')];
}

/**
 * A SentencePiece unigram model over the words of `captions`: `<pad>` 0, `</s>` 1, `<unk>` 2, then every word as one
 * piece `▁word` (score: log of its relative frequency), then every character seen (with and without `▁`) at a score
 * below any word, so any text over these characters segments (unknown characters become `<unk>`). No normaliser
 * charsmap (the captions are lower-case ASCII). Deterministic: pieces in first-seen order.
 */
export function captionTokenizer(captions: readonly string[]): TokenizerModel {
  const counts = new Map<string, number>();
  const chars = new Set<string>();
  let total = 0;
  for (const c of captions)
    for (const w of c.split(/\s+/).filter(Boolean)) {
      counts.set(w, (counts.get(w) ?? 0) + 1);
      total++;
      for (const ch of w) chars.add(ch);
    }
  if (!counts.size) throw new ValueError('study: no caption words to build a tokenizer from');
  const pieces: Piece[] = [
    { piece: '<pad>', score: 0, type: PieceType.CONTROL },
    { piece: '</s>', score: 0, type: PieceType.CONTROL },
    { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
  ];
  const minWord = Math.min(...[...counts.values()].map((n) => Math.log(n / total)));
  for (const [w, n] of counts) pieces.push({ piece: `\u2581${w}`, score: Math.fround(Math.log(n / total)), type: PieceType.NORMAL });
  pieces.push({ piece: '\u2581', score: Math.fround(minWord - 5), type: PieceType.NORMAL });
  for (const ch of chars) {
    pieces.push({ piece: ch, score: Math.fround(minWord - 10), type: PieceType.NORMAL });
    if (!counts.has(ch)) pieces.push({ piece: `\u2581${ch}`, score: Math.fround(minWord - 10), type: PieceType.NORMAL });
  }
  return { format: 'tokenizer.json', pieces, unkId: 2, eosId: 1, padId: 0, byteFallback: false, charsmap: null, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
}

/** Writes `dir/tokenizer.json` for captionTokenizer(captions); returns the vocabulary size. */
export function writeCaptionTokenizer(dir: string, captions: readonly string[]): number {
  const m = captionTokenizer(captions);
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, 'tokenizer.json'), JSON.stringify(toTokenizerJson(m)) + '\n');
  return m.pieces.length;
}

export interface ClipScore {
  accuracy: number;
  allCorrect: boolean;
  reading: ReturnType<typeof scoreShapes>;
}

/** The semantic score of one generated clip (T frames of 128x128 RGB, each H·W·3) against its prompt's attributes. */
export function scoreClip(frames: readonly Uint8Array[], attrs: Omit<ShapesVideo, 'start'>): ClipScore {
  const T = frames.length;
  const size = SHAPES_SIZE * SHAPES_SIZE * 3;
  const all = new Uint8Array(T * size);
  frames.forEach((f, t) => {
    if (f.length !== size) throw new ValueError(`study: generated frames must be ${SHAPES_SIZE}x${SHAPES_SIZE} RGB (${size} bytes), got ${f.length}`);
    all.set(f, t * size);
  });
  const reading = scoreShapes(all, T);
  return { ...shapesAccuracy(reading, attrs), reading };
}

export { SHAPES_FRAMES, SHAPES_SIZE };
