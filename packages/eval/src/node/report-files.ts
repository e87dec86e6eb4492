/** `dexar eval report DIR...`: merges the shard files of one or more run folders into a report. */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DexarError } from '@dexar/core';
import { writeAtomically } from '@dexar/runtime-node';
import type { RunHeader, SampleRecord } from '../records.js';
import { curvesSvg, groupTable, markdownName, markdownReport, markdownText, summarize } from '../report.js';
import type { CiMethod } from '../stats.js';
import { parseRecordLine, readRecordsText } from './record-lines.js';

export interface RecordSet {
  headers: RunHeader[];
  records: SampleRecord[];
  /** Files read. */
  files: string[];
  /** Shard indices seen, and the shard count. */
  shards: { count: number; present: number[] };
  /** (sample, method) pairs found in more than one file (the first is kept). */
  duplicates: number;
}

/** Reads every `records-*.jsonl` of the folders; all must come from one configuration. */
export async function readRecords(dirs: readonly string[]): Promise<RecordSet> {
  if (dirs.length === 0) throw new DexarError('invalid-options', 'dexar eval report needs at least one run folder');
  const files: string[] = [];
  for (const dir of dirs) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new DexarError('missing-file', `run folder ${dir} does not exist: pass the --out folders of dexar eval`);
    }
    const names = (await readdir(dir)).filter((n) => /^records-\d+-of-\d+\.jsonl$/.test(n)).sort();
    files.push(...names.map((n) => join(dir, n)));
  }
  if (files.length === 0) {
    throw new DexarError('missing-file', `no records-*.jsonl in ${dirs.join(', ')}: run dexar eval --out DIR first`);
  }
  const headers: RunHeader[] = [];
  const records: SampleRecord[] = [];
  const seen = new Set<string>();
  let duplicates = 0;
  for (const file of files) {
    const lines = (await readRecordsText(file)).split('\n');
    lines.forEach((line, i) => {
      // every record ends in a newline: text after the last one is a torn line of a run still in progress
      if (!line.trim() || i === lines.length - 1) return;
      const r = parseRecordLine(line, `${file}:${i + 1}`);
      if (r.kind === 'run') headers.push(r);
      else {
        const key = `${r.sample}\u0000${r.method}`;
        if (seen.has(key)) duplicates++;
        else {
          seen.add(key);
          records.push(r);
        }
      }
    });
  }
  const keys = new Set(headers.map((h) => h.configKey));
  if (keys.size > 1) {
    throw new DexarError(
      'invalid-options',
      `the folders hold runs of ${keys.size} different configurations (model, dataset, metrics or options): report each configuration separately`,
    );
  }
  const count = headers[0]?.shard.count ?? 1;
  if (headers.some((h) => h.shard.count !== count)) {
    throw new DexarError('invalid-options', 'the folders mix runs split into different shard counts');
  }
  const present = [...new Set(headers.map((h) => h.shard.index))].sort((a, b) => a - b);
  return { headers, records, files, shards: { count, present }, duplicates };
}

const describe = (set: RecordSet): string[] => {
  const h = set.headers.at(-1);
  if (!h) return [];
  const c = h.config;
  const p = c.perturbation;
  const notes = [
    `Model: ${markdownName(c.model)} (${markdownText(c.family)}); dataset: ${markdownName(c.dataset)}, ${c.samples} samples${c.limit !== null ? ` (the first ${c.limit}, --limit)` : ''}; samples in this report: ${new Set(set.records.map((r) => r.sample)).size}.`,
    `Shards: ${set.shards.present.length} of ${set.shards.count} present${
      set.shards.present.length < set.shards.count
        ? ` (missing: ${Array.from({ length: set.shards.count }, (_, i) => i)
            .filter((i) => !set.shards.present.includes(i))
            .join(', ')})`
        : ''
    }.`,
    `DEX-AR options: layerIndex ${c.dexar.layerIndex}, topK ${c.dexar.topK}, compat ${c.dexar.compat}; seed ${c.seed}; metrics: ${c.metrics.map(markdownText).join(', ')}.`,
  ];
  if (c.metrics.includes('perturbation')) {
    notes.push(
      `Perturbation: fractions ${p.fractions.join(', ')}; ${p.space === 'pixels' ? `pixel space, removed patches filled with ${p.fill}` : 'image tokens hidden from the attention'}; normalised perplexity ${p.normalization === 'ratio' ? 'PPL(f) / PPL(clean)' : '(PPL(f) - PPL(clean)) / (PPL(all removed) - PPL(clean))'}; AUC by the trapezoid rule over the fractions.`,
    );
  }
  if (c.metrics.includes('segmentation')) {
    notes.push(
      `Segmentation: maps upsampled bilinearly to the mask, min-max normalised, binarised at ${c.segmentation.threshold === 'mean' ? 'their mean' : c.segmentation.threshold}; pointing game and pixel accuracy in %.`,
    );
  }
  if (set.duplicates) notes.push(`${set.duplicates} duplicate (sample, method) records were ignored.`);
  return notes;
};

/** Writes `report.md` and `curves.svg` into `out` (default: the first folder); returns the Markdown. */
export async function writeReport(
  dirs: readonly string[],
  options: { out?: string; ci?: CiMethod; title?: string } = {},
): Promise<{ markdown: string; files: string[] }> {
  const set = await readRecords(dirs);
  const order = [...new Set(set.headers.flatMap((h) => h.methods))];
  const summary = summarize(set.records, { ...(options.ci ? { ci: options.ci } : {}), order });
  const notes = describe(set);
  const title = options.title ?? 'dexar evaluation';
  const hasCurves = Object.keys(summary.curves).length > 0;
  const markdown = `# ${title}\n\n${markdownReport(summary, notes, groupTable(set.records, order))}${hasCurves ? '\n![perturbation curves](curves.svg)\n' : ''}`;
  const out = options.out ?? dirs[0];
  const files = [join(out, 'report.md')];
  await writeAtomically(files[0], markdown);
  if (hasCurves) {
    files.push(join(out, 'curves.svg'));
    await writeAtomically(files[1], curvesSvg(summary, title));
  }
  return { markdown, files };
}
