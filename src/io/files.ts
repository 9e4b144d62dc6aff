/** Small file helpers shared by the readers and writers. */
import { closeSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import * as zlib from 'node:zlib';

/** Writes data to `path` atomically: a temporary file beside it, renamed into place only once complete. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    throw e;
  }
}

/** True when the file starts with a ZIP signature (torch.save checkpoints are zip archives). */
export function isZipFile(path: string): boolean {
  const head = Buffer.alloc(2);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 2, 0);
  } finally {
    closeSync(fd);
  }
  return head[0] === 0x50 && head[1] === 0x4b;
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (zlib's polynomial); native zlib.crc32 where this Node has it (>= 20.15). */
export function crc32(data: Uint8Array): number {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
