/**
 * The shapes world as the adapt study uses it (../shared/docs/shapes-world.md): the splits `dcvg data shapes` writes,
 * the fixed evaluation prompt set, a SentencePiece-unigram tokenizer built from the training captions' words, and the
 * semantic score of generated clips.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { SHAPES_FRAMES, SHAPES_MANIFEST, SHAPES_SIZE, scoreShapes, shapesAccuracy, type ShapesVideo } from '../metrics/shapes_world.js';
import { PieceType, toTokenizerJson, type Piece, type TokenizerModel } from '../text/index.js';
import { ValueError } from '../errors.js';

export type Split = 'train' | 'held-out';

export interface RenderedVideo {
  file: string;
  caption: string;
  attrs: Omit<ShapesVideo, 'start'>;
}

/**
 * The videos of a folder `dcvg data shapes` wrote (its manifest.json, which must be complete), as the study reads them:
 * file, caption and attributes.
 */
export function readShapesData(dir: string): RenderedVideo[] {
  const p = join(dir, SHAPES_MANIFEST);
  if (!existsSync(p)) throw new ValueError(`study: ${dir} holds no ${SHAPES_MANIFEST} (make it with dcvg data shapes)`);
  const m = JSON.parse(readFileSync(p, 'utf8')) as { complete?: boolean; videos?: (Omit<ShapesVideo, 'start'> & { file: string; caption: string })[] };
  if (m.complete !== true || !Array.isArray(m.videos)) throw new ValueError(`study: ${p} is not complete (dcvg data shapes was interrupted); run it again`);
  return m.videos.map(({ file, caption, color, shape, size, direction, background }) => ({ file, caption, attrs: { color, shape, size, direction, background } }));
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
