/**
 * `dcvg study export`: the command line of src/study/export.ts (the adapted model of a study adapt folder as a
 * generate-ready model folder; issue #21 item 5).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ValueError } from '../errors.js';
import { SHIPPED_MODEL_MAX_BYTES, exportAdaptedModel } from '../study/export.js';
import { parseValues, type Out } from './common.js';

export const STUDY_EXPORT_HELP = `dcvg study export --out DIR --to FOLDER [--force] [--json]
  The adapted DC model of the study in DIR (the --out of dcvg study adapt; its adapt stage complete) as a model folder
  dcvg generate reads (Wan layout: the merged phase-3 DiT and its config, the study's DC-AE-V with its measured scaling
  factor, the frozen umT5 and the tokenizer), with dcvg_generate.json (the study's evaluation settings as generate's
  defaults: 128x128, 16 frames), study-config.json and a README.md model card (provenance, commands, parameters,
  sizes, semantic scores of the adapted and base models). Only reads DIR. Written atomically; refused when the adapt
  stage is not complete, when FOLDER exists (without --force; --force replaces only an earlier export) or when the
  folder would exceed ${SHIPPED_MODEL_MAX_BYTES / 1e6} MB. Shipping the default model: --to assets/shapes-t2v.
  --json             print what was written (files, bytes, parameters, scores) as JSON`;

/** The commit of this checkout, when it is a git work tree. */
function gitCommit(): string | null {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const r = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export async function cmdStudyExport(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(STUDY_EXPORT_HELP + '\n');
    return 0;
  }
  const v = parseValues(args, { out: { type: 'string' }, to: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } }, 'study export', false);
  const study = v.out as string | undefined;
  const to = v.to as string | undefined;
  if (!study) throw new ValueError('study export needs --out <study folder> (the --out of dcvg study adapt)');
  if (!to) throw new ValueError('study export needs --to <model folder> (e.g. assets/shapes-t2v)');
  const command = `dcvg study export --out STUDY --to ${to}${v.force ? ' --force' : ''}`;
  const r = exportAdaptedModel({ study, to, force: v.force === true, commit: gitCommit(), command });
  if (v.json) out(JSON.stringify(r) + '\n');
  else {
    const s = r.scores.adapted;
    const p = (x: { accuracy: number } | null) => (x ? `${x.accuracy}%` : '-');
    out(`exported ${r.to}: ${r.files.length} files, ${r.bytes} bytes; ${r.params.total} parameters (DiT ${r.params.dit}, DC-AE-V ${r.params.autoencoder}, umT5 ${r.params.textEncoder})\n`);
    out(`semantic score (adapted, LoRA step ${s.step}): train ${p(s.train)}, held-out ${p(s.heldOut)}; base: train ${p(r.scores.base?.train ?? null)}, held-out ${p(r.scores.base?.heldOut ?? null)}\n`);
    out(`model card: ${join(r.to, 'README.md')}\n`);
  }
  return 0;
}
