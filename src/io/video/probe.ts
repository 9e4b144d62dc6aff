/** ffprobe (or the PNG header of a sequence's first image): size, frame count, rate, codec, rotation. */
import { VideoError } from '../../errors.js';
import { ffmpegText, ffprobeBin, run } from './ffmpeg.js';
import { pngSize, resolveSource, type Source } from './source.js';

/** Frame rate given to image sequences, which carry none (ffmpeg's own default for image2). */
export const DEFAULT_SEQUENCE_FPS = 25;

export interface VideoInfo {
  /** Absolute path (or pattern) as given to ffmpeg. */
  path: string;
  /** Displayed size: width and height are swapped for streams rotated by +-90 degrees (ffmpeg rotates on decode). */
  width: number;
  height: number;
  /** Frame count: exact when `framesExact`, else duration x fps rounded (0 when neither is known). */
  frames: number;
  framesExact: boolean;
  /** Average frame rate (0 when unknown). Image sequences: DEFAULT_SEQUENCE_FPS. */
  fps: number;
  /** Codec name as ffprobe spells it ('h264', 'vp9', 'gif', 'png', ...). */
  codec: string;
  /** Seconds (NaN when unknown). */
  durationSec: number;
  /** Container as ffprobe names it ('mov,mp4,m4a,3gp,3g2,mj2', 'matroska,webm', ...), or 'png-sequence'. */
  container: string;
  pixFmt: string | null;
  /** Display rotation in degrees from the stream's display matrix (0 when none). */
  rotation: number;
}

export interface ProbeOptions {
  /**
   * Count packets when the container does not store a frame count (webm, some avi/mpeg): exact, reads the whole
   * file but decodes nothing (about a second per GB).
   */
  countFrames?: boolean;
}

function parseRate(r: unknown): number {
  if (typeof r !== 'string') return NaN;
  const [n, d] = r.split('/').map(Number);
  if (d === undefined) return Number.isFinite(n) ? n! : NaN;
  return n! > 0 && d > 0 ? n! / d : NaN;
}

interface FfprobeStream {
  codec_name?: string;
  codec_type?: string;
  width?: number;
  height?: number;
  pix_fmt?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  nb_frames?: string;
  nb_read_packets?: string;
  duration?: string;
  disposition?: { attached_pic?: number };
  tags?: Record<string, string>;
  side_data_list?: { rotation?: number }[];
}

async function probeSequence(src: Extract<Source, { kind: 'pngdir' | 'pattern' }>): Promise<VideoInfo> {
  const first = src.kind === 'pngdir' ? src.files[0]! : src.first;
  const frames = src.kind === 'pngdir' ? src.files.length : src.count;
  const { width, height } = await pngSize(first);
  return {
    path: src.path,
    width,
    height,
    frames,
    framesExact: true,
    fps: DEFAULT_SEQUENCE_FPS,
    codec: 'png',
    durationSec: frames / DEFAULT_SEQUENCE_FPS,
    container: 'png-sequence',
    pixFmt: null,
    rotation: 0,
  };
}

export async function probeSource(src: Source, opts: ProbeOptions = {}): Promise<VideoInfo> {
  if (src.kind !== 'file') return probeSequence(src);
  const args = ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', '-select_streams', 'v'];
  if (opts.countFrames) args.push('-count_packets');
  args.push(src.path);
  const r = await run(ffprobeBin(), args);
  if (r.code !== 0) {
    // ffprobe prefixes its messages with the path, which our message already names.
    const text = ffmpegText(r.stderr.split(`${src.path}: `).join(''));
    throw new VideoError(`cannot read ${src.path}`, text || `ffprobe exited with code ${r.code}`);
  }
  let json: { streams?: FfprobeStream[]; format?: { format_name?: string; duration?: string } };
  try {
    json = JSON.parse(r.stdout);
  } catch {
    throw new VideoError(`ffprobe gave unparseable output for ${src.path}`, ffmpegText(r.stderr));
  }
  const streams = json.streams ?? [];
  // Cover art in audio files is a one-frame "video" stream; it is not a video.
  const s = streams.find((v) => v.codec_type === 'video' && !v.disposition?.attached_pic);
  const container = json.format?.format_name ?? 'unknown';
  if (!s) {
    const why = streams.length ? 'only an attached picture (cover art)' : 'no video stream';
    throw new VideoError(`${src.path} has ${why} (container: ${container})`);
  }
  if (!(s.width! > 0 && s.height! > 0)) throw new VideoError(`${src.path}: video stream has no size`, ffmpegText(r.stderr));
  const sideRot = s.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation;
  const rotation = Number(sideRot ?? s.tags?.rotate ?? 0) || 0;
  const swap = Math.abs(Math.round(rotation / 90)) % 2 === 1;
  let fps = parseRate(s.avg_frame_rate);
  if (!Number.isFinite(fps)) fps = parseRate(s.r_frame_rate);
  if (!Number.isFinite(fps)) fps = 0;
  let durationSec = Number(s.duration ?? json.format?.duration);
  if (!Number.isFinite(durationSec)) durationSec = NaN;
  let frames = Number(s.nb_frames);
  let framesExact = Number.isInteger(frames) && frames > 0;
  if (!framesExact && opts.countFrames) {
    frames = Number(s.nb_read_packets);
    framesExact = Number.isInteger(frames) && frames >= 0;
  }
  if (!framesExact) frames = fps > 0 && Number.isFinite(durationSec) ? Math.round(durationSec * fps) : 0;
  return {
    path: src.path,
    width: swap ? s.height! : s.width!,
    height: swap ? s.width! : s.height!,
    frames,
    framesExact,
    fps,
    codec: s.codec_name ?? 'unknown',
    durationSec,
    container,
    pixFmt: s.pix_fmt ?? null,
    rotation,
  };
}

/**
 * Size, frame count, rate, codec and duration of a video file, a directory of PNGs or a printf pattern
 * (frames/%05d.png). A missing path or an unreadable/corrupt file raises VideoError (with ffprobe's own message).
 */
export async function probeVideo(path: string, opts: ProbeOptions = {}): Promise<VideoInfo> {
  return probeSource(await resolveSource(path), opts);
}
