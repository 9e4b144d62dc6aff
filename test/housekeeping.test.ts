/**
 * Housekeeping (issue #17 item 7): every command parses its flags through the one shared parser (src/cli/common.ts),
 * whose error points at a help text that describes the command. `dcvg <cmd> --help` exists only for train-ae,
 * eval-ae and study; the others are described by `dcvg --help`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

describe('an unknown flag names the help that describes the command', () => {
  for (const cmd of [['encode', 'x.safetensors'], ['decode', 'x.safetensors'], ['convert', 'x.pt'], ['reconstruct', 'x.mp4'], ['run', 'wan']]) {
    it(`dcvg ${cmd.join(' ')} --bogus points at dcvg --help`, () => {
      const r = dcvg(...cmd, '--bogus');
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`^dcvg ${cmd[0]}: Unknown option '--bogus'.* \\(see dcvg --help\\)\\n$`));
    });
  }
  for (const cmd of [['train-ae'], ['eval-ae'], ['study', 'temporal']]) {
    it(`dcvg ${cmd.join(' ')} --bogus points at its own help`, () => {
      const r = dcvg(...cmd, '--bogus');
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`^dcvg ${cmd[0]}: Unknown option '--bogus'.* \\(see dcvg ${cmd[0]} --help\\)\\n$`));
    });
  }
  it('dcvg train-ae --help prints its help (the help the parser points at exists)', () => {
    const r = dcvg('train-ae', '--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^dcvg train-ae /);
  });
});
