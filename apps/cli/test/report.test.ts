import type { Explanation } from '@dexar/core';
import { expect, it } from 'vitest';
import { reportHtml } from '../src/report.js';

const hostile = '</script><script>window.pwned = 1</script><!--';
const png = new Uint8Array([137, 80, 78, 71]);

/** The fields the report reads, with model-folder, prompt and target text set to markup. */
const result = {
  tokens: [hostile, '<img src=x onerror=alert(1)>', "it's\u2028"],
  tokenWeights: [0.5, 0.25, 0.1],
  model: { family: '<b>llava</b>' },
  method: '<i>dexar</i>',
  prompt: 'USER: <image>\n"quoted" & </p> ASSISTANT:',
  options: { compat: 'official', topK: 1 },
  layersUsed: [0, 1],
} as unknown as Explanation;

it('keeps every text from the model folder, prompt and target inert in report.html', () => {
  const html = reportHtml(result, {
    image: png,
    sentence: { filtered: png, unfiltered: png },
    tokens: result.tokens.map(() => ({ filtered: png, unfiltered: png })),
  });
  expect(html.match(/<script/gi)).toHaveLength(1);
  expect(html.match(/<\/script/gi)).toHaveLength(1);
  expect(html).not.toMatch(/<img src=x|<b>|<i>|<!--/);
  expect(html).toContain('&quot;quoted&quot; &amp; &lt;/p&gt;');
  const embedded = /const tokens = (.*);/.exec(html)?.[1] ?? '';
  expect(JSON.parse(embedded)).toEqual(result.tokens);
});
