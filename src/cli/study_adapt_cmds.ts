/**
 * `dcvg study adapt`: the command line of src/cli/study_adapt.ts (the small-scale AE-Adapt-V study of issue #21).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ValueError } from '../errors.js';
import { SCALES, resolveStudyConfig } from '../study/config.js';
import { STAGES, StudyInterrupted, checkpointsToCarry, changeStartedStudy, openStudyFolder, runAdaptStudy, type StageName } from './study_adapt.js';
import { writeAdaptReport } from '../study/report.js';
import { parseValues, type Out } from './common.js';
import { stopOnSignals } from './train_cmds.js';

export const STUDY_ADAPT_HELP = `dcvg study adapt --out DIR [--scale real|smoke] [--config FILE] [--stages a,b] [--resume] [--publish FILE] [--json]
dcvg study adapt --out DIR --checkpoints-to-carry
  The small-scale AE-Adapt-V study (issue #21; docs/studies/adapt.md): shapes-world data (data shapes), a base
  autoencoder in the Wan-VAE topology (train-ae --model wan-vae:...) and DC-AE-V (train-ae), a tokenizer and frozen random umT5, latents, a base DiT (train-dit, scored while it trains),
  AE-Adapt-V phases 1-3 (adapt align / assemble / tune / lora / merge), the arms (no alignment, full fine-tuning,
  from scratch, latency) and the report. Every step runs a real dcvg command; DIR/commands.jsonl lists them.
  Stages: ${STAGES.join(', ')}.
  --scale S          built-in sizes and budgets: real (default; many hours on 2 cores) or smoke (seconds, for tests)
  --config FILE      JSON merged over the scale's config key by key (unknown keys refused); see src/study/config.ts
  --stages a,b       run only these stages (each needs the stages before it complete)
  --resume           continue the study in DIR with the config it was started with (no --scale / --config needed).
                     With --config FILE it may change what nothing was made with yet, and study.json records each
                     change: while the autoencoders stage is not complete, an autoencoder's step budget
                     (FILE = {"autoencoders": {"base": {"steps": N}}} or "dc"; raised, e.g. after a failed gate, or
                     lowered above the step its run reached; the run continues from its checkpoint on the new
                     cosine schedule) or the rest of its recipe (model, pretrain.*, lr, warmup, seed, batch, crop,
                     extra.*: before any of its runs started); dit.*, base.*, eval.steps /
                     guidance / shift / sampler, adapt.*, arms.* before their stage started. Nothing else.
                     Without --resume, a DIR that holds a study is continued too, provided the config given is the
                     same. Complete stages are skipped, finished evaluations kept, and an interrupted trainer continues
                     from its checkpoint (exact: the outputs equal an uninterrupted run's).
  --publish FILE     the report stage also writes its results into FILE (between the study:results markers) and
                     its images beside it (e.g. docs/studies/adapt.md)
  --log-every N      trainers' progress lines every N steps (default 50)
  --json             print a summary of the stages as JSON
  --checkpoints-to-carry
                     print the trainer checkpoints (one path per line, DIR/...) that continuing the study from a copy
                     of DIR needs, and exit: those of unfinished runs in stages not complete. A copy without the
                     rendered videos, the latents and the other checkpoints continues: the study renders and encodes
                     again what it still needs (docs/studies/adapt.md "Across machines")
  Ctrl-C (or SIGTERM) stops the running trainer after its current step with a checkpoint, or the study between
  evaluation clips; exit 130 / 143. Run the same command again to continue.`;

export async function cmdStudyAdapt(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(STUDY_ADAPT_HELP + '\n');
    return 0;
  }
  const v = parseValues(
    args,
    { out: { type: 'string' }, scale: { type: 'string' }, config: { type: 'string' }, stages: { type: 'string' }, publish: { type: 'string' }, 'log-every': { type: 'string' }, resume: { type: 'boolean' }, json: { type: 'boolean' }, 'checkpoints-to-carry': { type: 'boolean' } },
    'study adapt',
    false,
  );
  const s = (k: string) => v[k] as string | undefined;
  const dir = s('out');
  if (!dir) throw new ValueError('study adapt needs --out <dir>');
  if (v['checkpoints-to-carry']) {
    if (!existsSync(join(dir, 'study.json'))) throw new ValueError(`study adapt: ${dir} holds no study (no study.json)`);
    for (const f of checkpointsToCarry(dir)) out(join(dir, f) + '\n');
    return 0;
  }
  if (v.resume && s('scale')) throw new ValueError('study adapt --resume continues with the config the study was started with; leave out --scale');
  let stages: StageName[] | undefined;
  if (s('stages')) {
    stages = s('stages')!.split(',').map((x) => x.trim()) as StageName[];
    const bad = stages.filter((x) => !(STAGES as readonly string[]).includes(x));
    if (bad.length) throw new ValueError(`--stages: unknown stage ${bad.map((b) => `"${b}"`).join(', ')} (stages: ${STAGES.join(', ')})`);
  }
  const logEvery = s('log-every') === undefined ? 50 : Number(s('log-every'));
  if (!Number.isInteger(logEvery) || logEvery < 1) throw new ValueError(`--log-every must be a positive integer, got "${s('log-every')}"`);
  let override: unknown;
  if (s('config')) {
    const p = s('config')!;
    if (!existsSync(p)) throw new ValueError(`study adapt: --config ${p} not found`);
    try {
      override = JSON.parse(readFileSync(p, 'utf8'));
    } catch (e) {
      throw new ValueError(`study adapt: --config ${p} is not valid JSON (${(e as Error).message})`);
    }
  }
  let config = null;
  if (!v.resume) {
    const scale = s('scale') ?? 'real';
    if (!SCALES[scale]) throw new ValueError(`study adapt: unknown --scale "${scale}" (known: ${Object.keys(SCALES).join(', ')})`);
    config = resolveStudyConfig(scale, override, s('config'));
  } else if (s('config')) changeStartedStudy(dir, override, s('config')!);
  const cfg = openStudyFolder(dir, config);
  const signals = stopOnSignals('study adapt');
  const t0 = performance.now();
  try {
    const summary = await runAdaptStudy(
      { out: dir, config: cfg, stages },
      { log: (l) => process.stderr.write(`study adapt ${l}\n`), shouldStop: signals.stopped, logEvery },
      (o, c) => writeAdaptReport(o, c, s('publish')),
    );
    const seconds = +((performance.now() - t0) / 1000).toFixed(1);
    if (v.json) out(JSON.stringify({ out: dir, scale: cfg.scale, stages: summary, seconds }) + '\n');
    else {
      for (const x of summary) out(`${x.stage.padEnd(13)} ${x.status}${x.status === 'ran' ? ` in ${x.seconds}s (${x.cpuSeconds}s of CPU)` : ''}\n`);
      if (existsSync(join(dir, 'report', 'adapt.md'))) out(`report: ${join(dir, 'report', 'adapt.md')}\n`);
    }
    return 0;
  } catch (e) {
    if (e instanceof StudyInterrupted) {
      process.stderr.write(`study adapt: ${e.message}\n`);
      return signals.stopped() ? signals.exitCode() : e.exitCode;
    }
    throw e;
  } finally {
    signals.release();
  }
}
