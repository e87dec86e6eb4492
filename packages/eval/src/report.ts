/**
 * Aggregation of evaluation records into a table (mean and 95% confidence interval per method and
 * metric), Markdown, and SVG plots of the perturbation curves. Pure: the Node side reads the files.
 */
import type { SampleRecord } from './records.js';
import { type CiMethod, confidenceInterval, type Interval, mean, wilsonInterval } from './stats.js';

export interface MetricSpec {
  key: string;
  label: string;
  /** `higher` or `lower` is better. */
  better: 'higher' | 'lower';
  /** Shown as a percentage. */
  percent?: boolean;
  /** Values are 0/1: the t interval is replaced by the Wilson score interval. */
  binary?: boolean;
  /** The unit of observation, for the table's n. */
  unit: 'sample' | 'word' | 'caption';
  values(r: SampleRecord): number[];
}

const seg =
  (part: 'words' | 'sentence', field: 'pointing' | 'miou' | 'iou' | 'ap' | 'softIou' | 'pixelAccuracy') =>
  (r: SampleRecord): number[] => {
    const s = r.segmentation;
    if (!s) return [];
    if (part === 'words') return s.words.map((w) => w[field]);
    return s.sentence ? [s.sentence[field]] : [];
  };

export const metricSpecs: readonly MetricSpec[] = [
  {
    key: 'perturbation.positive.auc',
    label: 'positive AUC',
    better: 'higher',
    unit: 'sample',
    values: (r) => (r.perturbation ? [r.perturbation.positive.auc] : []),
  },
  {
    key: 'perturbation.negative.auc',
    label: 'negative AUC',
    better: 'lower',
    unit: 'sample',
    values: (r) => (r.perturbation ? [r.perturbation.negative.auc] : []),
  },
  {
    key: 'faithfulness.ok',
    label: 'delta ranking',
    better: 'higher',
    percent: true,
    binary: true,
    unit: 'caption',
    values: (r) => (r.faithfulness ? [r.faithfulness.ok] : []),
  },
  ...(['words', 'sentence'] as const).flatMap((part) =>
    (
      [
        ['pointing', 'pointing game', true],
        ['miou', 'mIoU', false],
        ['iou', 'IoU', false],
        ['ap', 'AP', false],
        ['softIou', 'soft IoU', false],
        ['pixelAccuracy', 'pixel accuracy', false],
      ] as const
    ).map(
      ([field, label, percent]): MetricSpec => ({
        key: `segmentation.${part}.${field}`,
        label,
        better: 'higher',
        percent,
        binary: field === 'pointing',
        unit: part === 'words' ? 'word' : 'sample',
        values: seg(part, field),
      }),
    ),
  ),
];

export interface Summary {
  methods: string[];
  samples: number;
  /** Per method, per metric key. */
  cells: Record<string, Record<string, Interval>>;
  /** Mean normalised perplexity per method, direction and fraction. */
  curves: Record<string, { fractions: number[]; positive: number[]; negative: number[] }>;
  /** Median wall time per sample and method, and of the shared explanation. */
  seconds: Record<string, { explain: number; method: number; perturbation: number; segmentation: number }>;
}

const median = (xs: number[]) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

/** Means and confidence intervals over the records, per method (in `order`, then any other) and metric. */
export function summarize(
  records: readonly SampleRecord[],
  options: { ci?: CiMethod; order?: readonly string[] } = {},
): Summary {
  const byMethod = new Map<string, SampleRecord[]>();
  for (const r of records) {
    const list = byMethod.get(r.method) ?? [];
    list.push(r);
    byMethod.set(r.method, list);
  }
  const order = options.order ?? [];
  const methods = [
    ...order.filter((m) => byMethod.has(m)),
    ...[...byMethod.keys()].filter((m) => !order.includes(m)).sort(),
  ];
  const cells: Summary['cells'] = {};
  const curves: Summary['curves'] = {};
  const seconds: Summary['seconds'] = {};
  for (const method of methods) {
    const rs = byMethod.get(method) ?? [];
    cells[method] = {};
    for (const spec of metricSpecs) {
      const values = rs.flatMap((r) => spec.values(r));
      cells[method][spec.key] =
        spec.binary && (options.ci ?? 't') === 't'
          ? wilsonInterval(values)
          : confidenceInterval(values, { method: options.ci ?? 't', seed: 7 });
    }
    const withCurves = rs.filter((r) => r.perturbation);
    if (withCurves.length) {
      const fractions = withCurves[0].perturbation?.positive.fractions ?? [];
      const at = (dir: 'positive' | 'negative', i: number) =>
        mean(withCurves.map((r) => r.perturbation?.[dir].nppl[i] ?? Number.NaN).filter(Number.isFinite));
      curves[method] = {
        fractions,
        positive: fractions.map((_, i) => at('positive', i)),
        negative: fractions.map((_, i) => at('negative', i)),
      };
    }
    seconds[method] = {
      explain: median(rs.map((r) => r.seconds.explain)),
      method: median(rs.map((r) => r.seconds.method)),
      perturbation: median(rs.map((r) => r.seconds.perturbation ?? 0)),
      segmentation: median(rs.map((r) => r.seconds.segmentation ?? 0)),
    };
  }
  return { methods, samples: new Set(records.map((r) => r.sample)).size, cells, curves, seconds };
}

const plainText = /^[\w .,:/@+-]*$/;

/**
 * Text from a records file (a group, a family), inert in Markdown: plain text as it is, anything
 * else with line breaks flattened and every ASCII punctuation mark backslash-escaped, so no record
 * can inject HTML, links or table cells into report.md.
 */
export function markdownText(text: string): string {
  if (plainText.test(text)) return text;
  return text.replace(/\s+/g, ' ').replace(/[!-/:-@[-`{-~]/g, (c) => `\\${c}`);
}

/** A name from a records file (a method, a model, a dataset): a code span where that is safe, else inert text. */
export const markdownName = (name: string): string => (plainText.test(name) ? `\`${name}\`` : markdownText(name));

function cell(iv: Interval | undefined, percent?: boolean): string {
  if (!iv || iv.n === 0) return 'n/a';
  const k = percent ? 100 : 1;
  const digits = percent ? 1 : 3;
  const f = (x: number) => (x * k).toFixed(digits);
  return Number.isFinite(iv.low) ? `${f(iv.mean)} [${f(iv.low)}, ${f(iv.high)}]` : f(iv.mean);
}

function table(summary: Summary, keys: readonly string[], nKey: string, nLabel: string): string {
  const specs = keys.map((k) => metricSpecs.find((s) => s.key === k) as MetricSpec);
  const head = [
    'method',
    nLabel,
    ...specs.map((s) => `${s.label}${s.percent ? ' (%)' : ''} ${s.better === 'higher' ? '↑' : '↓'}`),
  ];
  const rows = summary.methods.map((m) => [
    markdownName(m),
    String(summary.cells[m]?.[nKey]?.n ?? 0),
    ...specs.map((s) => cell(summary.cells[m]?.[s.key], s.percent)),
  ]);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map((_, i) => (i < 1 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

/** Key metrics per sample group (the manifest's `kind`), one row per method and group. */
export function groupTable(records: readonly SampleRecord[], order: readonly string[] = []): string | undefined {
  const groups = [...new Set(records.map((r) => r.group).filter((g): g is string => g !== undefined))].sort();
  if (groups.length < 2) return undefined;
  const keys = [
    'perturbation.positive.auc',
    'perturbation.negative.auc',
    'segmentation.words.pointing',
    'segmentation.sentence.pointing',
    'faithfulness.ok',
  ];
  const specs = keys.map((k) => metricSpecs.find((s) => s.key === k) as MetricSpec);
  const per = groups.map(
    (g) =>
      [
        g,
        summarize(
          records.filter((r) => r.group === g),
          { order },
        ),
      ] as const,
  );
  const present = specs.filter((s) =>
    per.some(([, sum]) => sum.methods.some((m) => (sum.cells[m]?.[s.key]?.n ?? 0) > 0)),
  );
  const head = [
    'method',
    'kind',
    'samples',
    ...present.map(
      (s) =>
        `${s.label}${s.unit === 'sample' ? '' : ` (${s.unit}s)`}${s.percent ? ' (%)' : ''} ${s.better === 'higher' ? '↑' : '↓'}`,
    ),
  ];
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const rows: string[] = [];
  const methods = per[0][1].methods;
  for (const m of methods) {
    for (const [g, sum] of per) {
      const n = new Set(records.filter((r) => r.group === g && r.method === m).map((r) => r.sample)).size;
      rows.push(
        line([
          markdownName(m),
          markdownText(g),
          String(n),
          ...present.map((s) => cell(sum.cells[m]?.[s.key], s.percent)),
        ]),
      );
    }
  }
  return [line(head), line(head.map((_, i) => (i < 2 ? '---' : '---:'))), ...rows].join('\n');
}

/** The results as Markdown: three tables (perturbation and token weights; words; sentence). */
export function markdownReport(summary: Summary, notes: readonly string[] = [], byGroup?: string): string {
  const hasPerturbation = summary.methods.some((m) => (summary.cells[m]?.['perturbation.positive.auc']?.n ?? 0) > 0);
  const hasFaith = summary.methods.some((m) => (summary.cells[m]?.['faithfulness.ok']?.n ?? 0) > 0);
  const hasWords = summary.methods.some((m) => (summary.cells[m]?.['segmentation.words.pointing']?.n ?? 0) > 0);
  const hasSentence = summary.methods.some((m) => (summary.cells[m]?.['segmentation.sentence.pointing']?.n ?? 0) > 0);
  const parts: string[] = [];
  parts.push(
    `Mean and 95% confidence interval per method (Student t; Wilson score interval for the 0/1 pointing game and delta ranking); ${summary.samples} samples.`,
  );
  if (notes.length) parts.push(notes.map((n) => `- ${n}`).join('\n'));
  if (hasPerturbation || hasFaith) {
    const keys = [
      ...(hasPerturbation ? ['perturbation.positive.auc', 'perturbation.negative.auc'] : []),
      ...(hasFaith ? ['faithfulness.ok'] : []),
    ];
    parts.push(
      `### Perturbation (normalised perplexity) and token weights\n\n${table(summary, keys, hasPerturbation ? keys[0] : 'faithfulness.ok', hasPerturbation ? 'samples' : 'captions')}`,
    );
    if (hasPerturbation && hasFaith) {
      parts.push(
        `Delta ranking over ${summary.methods.map((m) => `${summary.cells[m]?.['faithfulness.ok']?.n ?? 0}`).join(' / ')} captions (${summary.methods.map(markdownText).join(' / ')}); methods without token weights show n/a.`,
      );
    }
  }
  const segKeys = (part: string) =>
    ['pointing', 'miou', 'iou', 'ap', 'softIou', 'pixelAccuracy'].map((f) => `segmentation.${part}.${f}`);
  if (hasWords) {
    parts.push(
      `### Segmentation, per grounded word (its first token's map vs its object's mask)\n\n${table(summary, segKeys('words'), 'segmentation.words.pointing', 'words')}`,
    );
  }
  if (hasSentence) {
    parts.push(
      `### Segmentation, sentence map vs the union of the mentioned objects\n\n${table(summary, segKeys('sentence'), 'segmentation.sentence.pointing', 'samples')}`,
    );
  }
  if (byGroup) parts.push(`### By kind of sample\n\n${byGroup}`);
  const timing = summary.methods
    .map((m) => {
      const s = summary.seconds[m];
      return `| ${markdownName(m)} | ${(s.explain * 1000).toFixed(1)} | ${(s.method * 1000).toFixed(2)} | ${(s.perturbation * 1000).toFixed(1)} | ${(s.segmentation * 1000).toFixed(1)} |`;
    })
    .join('\n');
  parts.push(
    `### Time per sample (median, ms)\n\n| method | explain run (shared) | maps | perturbation | segmentation |\n| --- | ---: | ---: | ---: | ---: |\n${timing}`,
  );
  return `${parts.join('\n\n')}\n`;
}

const palette = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#7f7f7f', '#8c564b', '#e377c2'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** One SVG with a panel per direction: mean normalised perplexity against the removed fraction, a line per method. */
export function curvesSvg(summary: Summary, title = 'Perturbation curves'): string {
  const methods = summary.methods.filter((m) => summary.curves[m]);
  const W = 360;
  const H = 260;
  const pad = { l: 48, r: 12, t: 28, b: 40 };
  const all = methods
    .flatMap((m) => [...summary.curves[m].positive, ...summary.curves[m].negative])
    .filter(Number.isFinite);
  let yMin = Math.min(1, ...all);
  let yMax = Math.max(1, ...all);
  if (yMax - yMin < 1e-9) {
    yMin -= 0.5;
    yMax += 0.5;
  }
  const span = yMax - yMin;
  yMin -= span * 0.05;
  yMax += span * 0.05;
  const fr = methods.length ? summary.curves[methods[0]].fractions : [0, 1];
  const xMin = Math.min(...fr);
  const xMax = Math.max(...fr);
  const px = (x: number) => pad.l + ((x - xMin) / (xMax - xMin || 1)) * (W - pad.l - pad.r);
  const py = (y: number) => pad.t + (1 - (y - yMin) / (yMax - yMin)) * (H - pad.t - pad.b);
  const panel = (dir: 'positive' | 'negative', dx: number) => {
    const out: string[] = [`<g transform="translate(${dx},0)">`];
    out.push(
      `<rect x="${pad.l}" y="${pad.t}" width="${W - pad.l - pad.r}" height="${H - pad.t - pad.b}" fill="none" stroke="#999"/>`,
    );
    out.push(
      `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13">${dir === 'positive' ? 'positive: most relevant first (higher = better)' : 'negative: least relevant first (lower = better)'}</text>`,
    );
    for (let i = 0; i <= 4; i++) {
      const y = yMin + ((yMax - yMin) * i) / 4;
      out.push(
        `<line x1="${pad.l - 4}" x2="${pad.l}" y1="${py(y).toFixed(1)}" y2="${py(y).toFixed(1)}" stroke="#999"/><text x="${pad.l - 6}" y="${(py(y) + 4).toFixed(1)}" text-anchor="end" font-size="10">${y.toFixed(2)}</text>`,
      );
    }
    for (const x of fr) {
      out.push(
        `<text x="${px(x).toFixed(1)}" y="${H - pad.b + 14}" text-anchor="middle" font-size="10">${x.toFixed(1)}</text>`,
      );
    }
    out.push(
      `<text x="${(pad.l + W - pad.r) / 2}" y="${H - 8}" text-anchor="middle" font-size="11">fraction of image removed</text>`,
    );
    methods.forEach((m, k) => {
      const c = summary.curves[m];
      const pts = c.fractions
        .map((x, i) => [x, c[dir][i]] as const)
        .filter(([, y]) => Number.isFinite(y))
        .map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`)
        .join(' ');
      out.push(`<polyline points="${pts}" fill="none" stroke="${palette[k % palette.length]}" stroke-width="2"/>`);
    });
    out.push('</g>');
    return out.join('');
  };
  const legend = methods
    .map(
      (m, k) =>
        `<g transform="translate(${pad.l + (k % 3) * 200},${H + 16 + Math.floor(k / 3) * 16})"><line x1="0" x2="18" y1="-4" y2="-4" stroke="${palette[k % palette.length]}" stroke-width="3"/><text x="24" y="0" font-size="11">${esc(m)}</text></g>`,
    )
    .join('');
  const height = H + 24 + Math.ceil(methods.length / 3) * 16;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${height}" viewBox="0 0 ${2 * W} ${height}" font-family="sans-serif"><title>${esc(title)}</title><rect width="100%" height="100%" fill="white"/>${panel('positive', 0)}${panel('negative', W)}<text x="8" y="${(pad.t + H - pad.b) / 2}" font-size="11" transform="rotate(-90 8 ${(pad.t + H - pad.b) / 2})" text-anchor="middle">normalised perplexity</text>${legend}</svg>\n`;
}
