import { describe, expect, it } from 'vitest';
import type { SampleRecord } from '../src/records.js';
import { curvesSvg, groupTable, markdownReport, summarize } from '../src/report.js';

const seg = (pointing: number, miou: number) => ({
  pointing,
  pixelAccuracy: 0.5,
  iou: 0.25,
  miou,
  ap: 0.5,
  softIou: 0.2,
  threshold: 0.4,
  constant: 0,
});

function record(sample: string, method: string, auc: number, words: number[], ok: number | null): SampleRecord {
  const curve = { fractions: [0.1, 0.5], ppl: [2, 3], nppl: [1, auc], auc };
  return {
    kind: 'sample',
    sample,
    index: 0,
    method,
    target: 't',
    tokens: ['t'],
    perturbation: { clean: 2, positive: curve, negative: { ...curve, auc: auc / 2 } },
    segmentation: { words: words.map((p, i) => ({ word: `w${i}`, token: i, ...seg(p, 0.5) })), sentence: seg(1, 0.75) },
    faithfulness: ok === null ? null : { groundedMean: 1, fillerMean: 0, ok, strictOk: ok },
    seconds: { explain: 0.01, method: 0.001, perturbation: 0.1, segmentation: 0.02 },
  };
}

describe('report', () => {
  const records = [
    record('a', 'random', 1, [0, 0], 0),
    record('a', 'dexar', 2, [1, 1], 1),
    record('b', 'dexar', 4, [1, 0], 1),
    record('c', 'dexar', 3, [], null),
  ];

  it('summarises per method: t intervals for continuous metrics, Wilson for 0/1 ones', () => {
    const s = summarize(records, { order: ['dexar', 'random'] });
    expect(s.methods).toEqual(['dexar', 'random']);
    expect(s.samples).toBe(3);
    const auc = s.cells.dexar['perturbation.positive.auc'];
    expect(auc.n).toBe(3);
    expect(auc.mean).toBe(3);
    expect(auc.high - auc.mean).toBeCloseTo(4.3026527 * (1 / Math.sqrt(3)), 5); // s = 1
    const pointing = s.cells.dexar['segmentation.words.pointing'];
    expect(pointing).toMatchObject({ n: 4, mean: 3 / 4 });
    expect(pointing.low).toBeGreaterThanOrEqual(0);
    expect(pointing.high).toBeLessThanOrEqual(1);
    expect(s.cells.dexar['faithfulness.ok'].n).toBe(2); // the third sample has no filler
    expect(s.cells.random['perturbation.positive.auc'].low).toBeNaN(); // one observation
    expect(s.curves.dexar.positive).toEqual([1, 3]);
    expect(s.curves.dexar.negative).toEqual([1, 3]);
  });

  it('writes Markdown tables and an SVG with a line per method', () => {
    const s = summarize(records);
    const md = markdownReport(s, ['a note']);
    expect(md).toContain('- a note');
    expect(md).toMatch(/\| `dexar` \| 3 \| 3\.000 \[0\.516, 5\.484\] \| 1\.500 \[/);
    expect(md).toMatch(/\| `random` \| 1 \| 1\.000 \| 0\.500 \| 0\.0 \[0\.0, 79\.3\] \|/);
    expect(md).toContain('### Segmentation, per grounded word');
    expect(md).toContain('### Segmentation, sentence map');
    const svg = curvesSvg(s);
    expect(svg.match(/<polyline/g)).toHaveLength(4); // 2 methods x 2 panels
    expect(svg).toContain('>dexar</text>');
  });

  it('breaks key metrics down by the manifest kind', () => {
    const grouped = records.map((r) => ({ ...r, group: r.sample === 'a' ? 'caption' : 'question' }));
    const table = groupTable(grouped, ['dexar', 'random']) as string;
    expect(table.split('\n')).toHaveLength(2 + 4); // dexar and random x caption and question
    expect(table).toMatch(/\| `dexar` \| caption \| 1 \| 2\.000 \|/);
    expect(table).toMatch(/\| `dexar` \| question \| 2 \| 3\.500 \[/);
    expect(groupTable(records)).toBeUndefined(); // no groups
  });

  it('keeps method and group names from a records file inert in the Markdown', () => {
    const hostile = records.map((r) => ({
      ...r,
      method: r.method === 'dexar' ? '<img src=x onerror=alert(1)>`|' : r.method,
      group: r.sample === 'a' ? '<script>alert(1)</script>\n| forged | row |' : 'question',
    }));
    const md = markdownReport(summarize(hostile), [], groupTable(hostile));
    expect(md).not.toMatch(/(^|[^\\])[<`|](img|script)/m);
    expect(md).toContain('\\<img src\\=x onerror\\=alert\\(1\\)\\>\\`\\|');
    expect(md).not.toContain('\n| forged');
    expect(md).toContain('| `random` |');
  });
});
