/** Small file helpers shared by the readers and writers. */
import { closeSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';

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
