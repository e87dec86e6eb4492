import type { Explanation } from '@dexar/core';

interface Overlays {
  image: Uint8Array;
  sentence: { filtered: Uint8Array; unfiltered: Uint8Array };
  tokens: { filtered: Uint8Array; unfiltered: Uint8Array }[];
}

const dataUrl = (png: Uint8Array) => `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
/** Text from the model folder, prompt, target or result, inert in element content and quoted attributes. */
const escapeHtml = (text: string | number) =>
  String(text).replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

/**
 * JSON that stays data inside a `<script>` element: `<`, `>` and `&` as \u escapes, so no string
 * (a tokenizer piece `</script><script>...`) can close the element or open a comment, and the
 * line separators older engines reject in string literals likewise.
 */
const scriptJson = (value: unknown) =>
  JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * One self-contained HTML file: the answer with each token shaded by its
 * delta; hovering or clicking a token shows its map, the sentence map
 * otherwise; a filtered/unfiltered toggle. Overlays are embedded PNGs.
 */
export function reportHtml(result: Explanation, overlays: Overlays): string {
  const maxDelta = Math.max(...result.tokenWeights, 1e-12);
  const tokens = result.tokens
    .map((token, n) => {
      const shade = (result.tokenWeights[n] / maxDelta).toFixed(3);
      return `<button class="token" data-n="${n}" style="--w:${shade}" title="δ = ${result.tokenWeights[n].toFixed(4)}">${escapeHtml(token)}</button>`;
    })
    .join(' ');
  const maps = {
    sentence: [dataUrl(overlays.sentence.filtered), dataUrl(overlays.sentence.unfiltered)],
    tokens: overlays.tokens.map((t) => [dataUrl(t.filtered), dataUrl(t.unfiltered)]),
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dexar report</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem;color:#222}
.view{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start}
.view img{max-width:min(100%,28rem);image-rendering:auto;border:1px solid #ccc}
.token{font:inherit;font-size:1.1rem;border:1px solid transparent;border-radius:4px;padding:.1rem .25rem;cursor:pointer;
background:rgba(209,73,91,var(--w))}
.token[aria-pressed=true]{border-color:#222}
.meta{color:#666;font-size:.9rem}
</style></head><body>
<h1>dexar</h1>
<p class="meta">${escapeHtml(result.model?.family ?? '')} · method ${escapeHtml(result.method)} · compat ${escapeHtml(result.options.compat)} · layers ${escapeHtml(result.layersUsed[0] ?? '')}–${escapeHtml(result.layersUsed.at(-1) ?? '')} · top-k ${escapeHtml(result.options.topK)}</p>
<p><strong>Prompt:</strong> ${escapeHtml(result.prompt ?? '')}</p>
<p id="answer"><strong>Answer</strong> (shaded by token weight δ; hover or click a token): ${tokens}</p>
<p><label><input type="checkbox" id="unfiltered"> unfiltered maps (no head filtering)</label> · <span id="showing">sentence map</span></p>
<div class="view"><img id="overlay" alt="heatmap overlay"><img src="${dataUrl(overlays.image)}" alt="input image"></div>
<script>
const maps = ${scriptJson(maps)};
const tokens = ${scriptJson(result.tokens)};
let selected = null;
const img = document.getElementById('overlay'), toggle = document.getElementById('unfiltered'), showing = document.getElementById('showing');
function show(n) {
  const v = toggle.checked ? 1 : 0;
  img.src = n === null ? maps.sentence[v] : maps.tokens[n][v];
  showing.textContent = n === null ? 'sentence map' : 'map of ' + JSON.stringify(tokens[n]);
}
for (const b of document.querySelectorAll('.token')) {
  const n = Number(b.dataset.n);
  b.addEventListener('mouseenter', () => show(n));
  b.addEventListener('mouseleave', () => show(selected));
  b.addEventListener('click', () => {
    selected = selected === n ? null : n;
    for (const o of document.querySelectorAll('.token')) o.setAttribute('aria-pressed', String(Number(o.dataset.n) === selected));
    show(selected);
  });
}
toggle.addEventListener('change', () => show(selected));
show(null);
</script></body></html>
`;
}
