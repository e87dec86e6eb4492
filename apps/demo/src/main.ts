import './style.css';
import { type ColormapName, type Explanation, overlayHeatmap, type RgbaImage, resample } from '@dexar/core';
import type { ProgressEvent } from '@dexar/core/adapter';
import { checkImageHeader, type Variant } from '@dexar/core/runtime';
import type { StreamedToken } from '@dexar/explain';
import { encodePng, encodePngBytes, toImageData } from '@dexar/runtime-web';
import type { BuiltinManifest } from './builtin.js';
import { type PageModel, type Pipeline, type RuntimeInfo, WorkerPipeline } from './pipeline.js';
import type { Explained, ExplainInput, Opened } from './protocol.js';
import { ServerPipeline } from './served.js';
import { zip } from './zip.js';

// ---- elements

const $ = <T extends HTMLElement>(id: string) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
};
const ui = {
  drop: $<HTMLButtonElement>('drop'),
  preview: $<HTMLImageElement>('preview'),
  imageInput: $<HTMLInputElement>('image-input'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  target: $<HTMLInputElement>('target'),
  modelName: $<HTMLSpanElement>('model-name'),
  variant: $<HTMLSelectElement>('variant'),
  builtinModel: $<HTMLButtonElement>('builtin-model'),
  pickModel: $<HTMLButtonElement>('pick-model'),
  modelInput: $<HTMLInputElement>('model-input'),
  layerIndex: $<HTMLInputElement>('layer-index'),
  topK: $<HTMLInputElement>('top-k'),
  compat: $<HTMLSelectElement>('compat'),
  method: $<HTMLSelectElement>('method'),
  maxNew: $<HTMLInputElement>('max-new'),
  backend: $<HTMLSelectElement>('backend'),
  explain: $<HTMLButtonElement>('explain'),
  progress: $<HTMLProgressElement>('progress'),
  status: $<HTMLParagraphElement>('status'),
  notices: $<HTMLUListElement>('notices'),
  resultsHint: $<HTMLParagraphElement>('results-hint'),
  result: $<HTMLDivElement>('result'),
  tokens: $<HTMLDivElement>('tokens'),
  overlay: $<HTMLCanvasElement>('overlay'),
  overlayCaption: $<HTMLElement>('overlay-caption'),
  sentence: $<HTMLCanvasElement>('sentence'),
  opacity: $<HTMLInputElement>('opacity'),
  opacityValue: $<HTMLOutputElement>('opacity-value'),
  colormap: $<HTMLSelectElement>('colormap'),
  headsTitle: $<HTMLHeadingElement>('heads-title'),
  headsHint: $<HTMLParagraphElement>('heads-hint'),
  headsGrid: $<HTMLDivElement>('heads-grid'),
  exportPng: $<HTMLButtonElement>('export-png'),
  exportZip: $<HTMLButtonElement>('export-zip'),
  exportJson: $<HTMLButtonElement>('export-json'),
  timing: $<HTMLSpanElement>('timing'),
  backendInfo: $<HTMLSpanElement>('backend-info'),
  privacy: $<HTMLParagraphElement>('privacy'),
  where: $<HTMLSpanElement>('where'),
};

// ---- the pipeline: this browser's runtime, or the dexar server that served the page (it says so in a meta tag)

const served = document.querySelector<HTMLMetaElement>('meta[name="dexar-runtime"]')?.content === 'server';
const pipeline: Pipeline = served ? new ServerPipeline() : new WorkerPipeline();

// ---- state

interface State {
  manifest?: BuiltinManifest;
  backendInfo?: RuntimeInfo;
  modelSource?: PageModel;
  modelLabel: string;
  opened?: Opened;
  image?: { bytes: Uint8Array; name: string };
  explained?: Explained;
  display?: RgbaImage;
  /** Selected token; -1 is the sentence map. */
  selected: number;
  hovered?: number;
  busy: boolean;
}
const state: State = { modelLabel: '', selected: -1, busy: false };

const busyButtons = () => [ui.explain, ui.builtinModel, ui.pickModel, ui.variant];

function setBusy(busy: boolean) {
  state.busy = busy;
  for (const b of busyButtons()) b.disabled = busy;
  ui.explain.disabled = busy || !state.opened || !state.image;
  ui.backend.disabled = busy;
  document.body.toggleAttribute('aria-busy', busy);
}

function setStatus(text: string, kind: 'info' | 'error' | 'done' = 'info') {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

function showProgress(event?: ProgressEvent) {
  if (!event) {
    ui.progress.hidden = true;
    return;
  }
  ui.progress.hidden = false;
  if (event.total) {
    ui.progress.max = event.total;
    ui.progress.value = event.done ?? 0;
  } else {
    ui.progress.removeAttribute('value');
  }
  const count = event.total && event.stage !== 'load' ? ` ${event.done ?? 0}/${event.total}` : '';
  const what: Record<ProgressEvent['stage'], string> = {
    load: 'Loading',
    prepare: 'Preparing image and prompt',
    generate: 'Generating the answer',
    explain: 'Running the explain graph',
    aggregate: 'Aggregating heatmaps',
  };
  setStatus(`${what[event.stage]}${count}${event.detail ? `: ${event.detail}` : ''}…`);
}

function renderNotices() {
  const notices = [...(state.backendInfo?.notices ?? [])];
  if (state.manifest?.fallback) {
    notices.unshift(
      `The built-in shapes model is not in this build; using ${state.manifest.name} (${state.manifest.source}), a tiny test model with untrained weights.`,
    );
  }
  ui.notices.replaceChildren(
    ...notices.map((n) => {
      const li = document.createElement('li');
      li.textContent = n;
      return li;
    }),
  );
}

function renderBackendInfo() {
  const info = state.backendInfo;
  if (!info) return;
  ui.backendInfo.textContent = info.label;
  document.body.dataset.backend = info.executionProvider;
  document.body.dataset.threads = String(info.threads);
  document.body.dataset.where = info.where;
}

// ---- start-up, model and image

async function init() {
  setBusy(true);
  try {
    setStatus('Starting ONNX Runtime…');
    // ?threads=N overrides the WebAssembly thread count (default: all cores when cross-origin isolated).
    const threads = Number(new URLSearchParams(location.search).get('threads')) || undefined;
    state.backendInfo = await pipeline.init(ui.backend.value as 'auto', threads);
    renderBackendInfo();
    renderNotices();
    if (state.modelSource) await openModel(state.modelSource, state.modelLabel);
  } catch (error) {
    fail(error);
  } finally {
    setBusy(false);
  }
}

/** Whether the page names the weight variant that runs: one other than fp32, or one of several. */
const variantNamed = () => !!state.opened && (state.opened.variant !== 'fp32' || state.opened.variants.length > 1);

/** A folder with several weight variants opens its fp32 graphs (or its first variant); the select picks another. */
async function openModel(source: PageModel, label: string, variant?: Variant) {
  setBusy(true);
  ui.modelName.textContent = `${label} (opening…)`;
  try {
    state.opened = undefined;
    state.opened = await pipeline.open(source, showProgress, variant);
    state.modelSource = source;
    state.modelLabel = label;
    const { family, numLayers, variants } = state.opened;
    const weights = variantNamed() ? `, ${state.opened.variant} weights` : '';
    ui.modelName.textContent = `${label} · ${family}, ${numLayers} layers${weights}`;
    ui.variant.replaceChildren(...variants.map((v) => new Option(v, v, false, v === state.opened?.variant)));
    ui.variant.hidden = variants.length < 2;
    showProgress();
    setStatus(state.image ? 'Ready: press Explain.' : 'Ready: choose an image.', 'done');
  } catch (error) {
    ui.modelName.textContent = `${label} (failed to open)`;
    fail(error);
  } finally {
    setBusy(false);
  }
}

async function openBuiltin() {
  const m = state.manifest;
  if (!m) return;
  await openModel({ kind: 'url', url: new URL(m.model, document.baseURI).href }, `${m.name} (built-in)`);
}

async function setImage(bytes: Uint8Array, name: string) {
  state.image = { bytes, name };
  const old = ui.preview.src;
  ui.preview.src = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>]));
  ui.preview.alt = `Input: ${name}`;
  if (old.startsWith('blob:')) URL.revokeObjectURL(old);
  ui.drop.classList.add('has-image');
  setBusy(state.busy);
}

async function imageFromFile(file: File) {
  if (!/^image\/(png|jpeg|webp)$/.test(file.type) && !/\.(png|jpe?g|webp)$/i.test(file.name)) {
    fail(new Error(`${file.name} is not a PNG, JPEG or WebP image`));
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  try {
    // refused from its header, as the CLI refuses it: neither the preview nor the worker decodes it
    checkImageHeader(bytes);
  } catch (error) {
    fail(error);
    return;
  }
  await setImage(bytes, file.name);
  setStatus(state.opened ? 'Ready: press Explain.' : 'Image loaded.', 'done');
}

function fail(error: unknown) {
  const message = (error as Error)?.message ?? String(error);
  showProgress();
  setStatus(message, 'error');
  console.error(error);
}

// ---- explaining

function explainInput(): ExplainInput {
  const image = state.image;
  if (!image) throw new Error('choose an image first');
  const int = (el: HTMLInputElement, name: string) => {
    const v = Number(el.value);
    if (!Number.isInteger(v)) throw new Error(`${name} must be an integer`);
    return v;
  };
  const mode = (document.querySelector('input[name="mode"]:checked') as HTMLInputElement).value;
  const target = ui.target.value.trim();
  if (mode === 'target' && !target) throw new Error('type the text to explain, or choose "the model\'s answer"');
  return {
    image: image.bytes,
    prompt: ui.prompt.value,
    ...(mode === 'target' ? { target } : {}),
    maxNewTokens: int(ui.maxNew, 'max new tokens'),
    layerIndex: int(ui.layerIndex, 'layer index'),
    topK: int(ui.topK, 'top-k'),
    compat: ui.compat.value as 'official' | 'paper',
    method: ui.method.value,
  };
}

async function runExplain() {
  let input: ExplainInput;
  try {
    input = explainInput();
  } catch (error) {
    fail(error);
    return;
  }
  setBusy(true);
  document.body.dataset.state = 'running';
  delete document.body.dataset.explainMs;
  try {
    const live = liveExplanation(input);
    const explained = await pipeline.explain(input, showProgress, live.onToken);
    await live.drawn();
    await showResult(explained);
    showProgress();
    const method = explained.result.method === 'dexar' ? '' : ` with ${explained.result.method}`;
    const weights = variantNamed() ? ` (${state.opened?.variant} weights)` : '';
    setStatus(
      `Explained ${explained.result.tokens.length} tokens${method}${weights} in ${(explained.ms / 1000).toFixed(2)} s.`,
      'done',
    );
    document.body.dataset.explainMs = explained.ms.toFixed(1);
    document.body.dataset.state = 'done';
  } catch (error) {
    fail(error);
    document.body.dataset.state = 'error';
  } finally {
    setBusy(false);
  }
}

/**
 * Shows the model's answer as it is generated: each token's chip and map as it arrives, the newest
 * selected. The sentence maps need every token and follow with the result (blank until then).
 */
function liveExplanation(input: ExplainInput) {
  const tokens: StreamedToken[] = [];
  let image: RgbaImage | undefined;
  const t0 = performance.now();
  let drawing = Promise.resolve();
  const draw = async (token: StreamedToken) => {
    if (!image) return;
    const grid = { height: token.heatmap.length, width: token.heatmap[0]?.length ?? 0 };
    const blank = Array.from({ length: grid.height }, () => new Array<number>(grid.width).fill(0));
    const result: Explanation = {
      schemaVersion: 1,
      method: 'dexar',
      options: { layerIndex: input.layerIndex, topK: input.topK, compat: input.compat },
      layersUsed: [],
      grid,
      tokens: tokens.map((t) => t.token),
      tokenIds: tokens.map((t) => t.tokenId),
      perTokenHeatmaps: tokens.map((t) => t.heatmap),
      perTokenHeatmapsUnfiltered: tokens.map((t) => t.heatmapUnfiltered),
      tokenWeights: tokens.map((t) => t.tokenWeight),
      sentenceHeatmap: blank,
      sentenceHeatmapUnfiltered: blank,
      headWeights: tokens.map((t) => t.headWeights),
    };
    await showResult({ result, image, ms: performance.now() - t0 });
    select(tokens.length - 1);
    const provisional = token.provisional ? ' (its map is provisional until the end: a constant official map)' : '';
    setStatus(`Generated and explained ${tokens.length} tokens; the sentence map follows at the end${provisional}.`);
  };
  return {
    onToken(token: StreamedToken, first?: RgbaImage) {
      image ??= first;
      tokens.push(token);
      drawing = drawing.then(() => draw(token)); // in arrival order, each after the last is drawn
    },
    drawn: () => drawing,
  };
}

/** Overlays are drawn at least this large on their longer side (as the CLI does), and at most the second. */
const MIN_DISPLAY = 384;
const MAX_DISPLAY = 768;

async function displayImage(image: RgbaImage): Promise<RgbaImage> {
  const long = Math.max(image.width, image.height);
  const target = Math.min(Math.max(long, MIN_DISPLAY), MAX_DISPLAY);
  if (target === long) return image;
  const scale = target / long;
  return resample(
    image,
    Math.max(1, Math.round(image.width * scale)),
    Math.max(1, Math.round(image.height * scale)),
    'bilinear',
  );
}

async function showResult(explained: Explained) {
  state.explained = explained;
  state.display = await displayImage(explained.image);
  state.selected = -1;
  state.hovered = undefined;
  const { result } = explained;
  ui.overlay.width = state.display.width;
  ui.overlay.height = state.display.height;
  ui.sentence.width = state.display.width;
  ui.sentence.height = state.display.height;
  renderTokens(result);
  ui.result.hidden = false;
  ui.resultsHint.hidden = true;
  ui.timing.textContent = `${(explained.ms / 1000).toFixed(2)} s on ${state.backendInfo?.short ?? 'this browser'}`;
  drawSentence();
  drawView();
}

/** Token text for display: SentencePiece's word marker as a space, control characters visible. */
function tokenText(token: string): string {
  const text = token.replace(/▁/g, ' ').replace(/Ġ/g, ' ').replace(/Ċ/g, '↵');
  return text.trim() === '' ? JSON.stringify(token).slice(1, -1) || '␣' : text;
}

function renderTokens(result: Explanation) {
  const max = Math.max(...result.tokenWeights, 1e-12);
  const chips: HTMLButtonElement[] = [];
  const sentence = document.createElement('button');
  sentence.type = 'button';
  sentence.className = 'token sentence';
  sentence.dataset.index = '-1';
  sentence.innerHTML = '<span class="t">Sentence</span><span class="d">all tokens</span>';
  chips.push(sentence);
  result.tokens.forEach((token, n) => {
    const chip = document.createElement('button');
    chip.type = 'button';
    chip.className = 'token';
    chip.dataset.index = String(n);
    const w = result.tokenWeights[n];
    chip.style.setProperty('--w', (w / max).toFixed(3));
    const t = document.createElement('span');
    t.className = 't';
    t.textContent = tokenText(token);
    const d = document.createElement('span');
    d.className = 'd';
    d.textContent = `δ ${w.toFixed(2)}`;
    chip.append(t, d);
    chip.title = `${JSON.stringify(token)}: token weight δ = ${w.toFixed(4)}`;
    chip.setAttribute('aria-label', `${tokenText(token).trim()}, weight ${w.toFixed(2)}`);
    chips.push(chip);
  });
  ui.tokens.replaceChildren(...chips);
  updateTokenSelection();
}

function updateTokenSelection() {
  for (const chip of ui.tokens.querySelectorAll<HTMLButtonElement>('.token')) {
    const on = Number(chip.dataset.index) === state.selected;
    chip.setAttribute('aria-pressed', String(on));
    chip.tabIndex = on ? 0 : -1;
  }
}

function select(index: number, focus = false) {
  const count = state.explained?.result.tokens.length ?? 0;
  state.selected = Math.min(Math.max(index, -1), count - 1);
  updateTokenSelection();
  if (focus) ui.tokens.querySelector<HTMLButtonElement>(`.token[data-index="${state.selected}"]`)?.focus();
  drawView();
}

const filtered = () =>
  (document.querySelector('input[name="filter"]:checked') as HTMLInputElement).value === 'filtered';
const alpha = () => Number(ui.opacity.value) / 100;
const colormap = () => ui.colormap.value as ColormapName;

function mapOf(result: Explanation, index: number, useFiltered = filtered()): number[][] {
  if (index < 0) return useFiltered ? result.sentenceHeatmap : result.sentenceHeatmapUnfiltered;
  return (useFiltered ? result.perTokenHeatmaps : result.perTokenHeatmapsUnfiltered)[index];
}

function render(index: number, useFiltered = filtered()): RgbaImage | undefined {
  const { explained, display } = state;
  if (!explained || !display) return undefined;
  const { result } = explained;
  return overlayHeatmap(display, mapOf(result, index, useFiltered).flat(), result.grid, {
    alpha: alpha(),
    colormap: colormap(),
  });
}

function drawView() {
  const index = state.hovered ?? state.selected;
  for (const chip of ui.tokens.querySelectorAll<HTMLButtonElement>('.token')) {
    chip.classList.toggle('previewing', state.hovered !== undefined && Number(chip.dataset.index) === state.hovered);
  }
  const image = render(index);
  const result = state.explained?.result;
  if (!image || !result) return;
  ui.overlay.getContext('2d')?.putImageData(toImageData(image), 0, 0);
  ui.overlay.dataset.index = String(index);
  const which = filtered() ? 'filtered' : 'unfiltered';
  ui.overlayCaption.textContent =
    index < 0
      ? `Sentence map (${which})`
      : `“${tokenText(result.tokens[index]).trim()}” (${which}, δ ${result.tokenWeights[index].toFixed(3)})`;
  drawHeads(index);
}

function drawSentence() {
  const image = render(-1);
  if (image) ui.sentence.getContext('2d')?.putImageData(toImageData(image), 0, 0);
}

function drawHeads(index: number) {
  const result = state.explained?.result;
  const weights = result?.headWeights;
  if (!result || !weights || weights.length === 0) {
    ui.headsGrid.replaceChildren();
    ui.headsHint.textContent = 'No head weights in this result.';
    return;
  }
  const Lu = result.layersUsed.length;
  const H = weights[0][0].length;
  let rows: number[][];
  if (index >= 0) {
    rows = weights[index];
    ui.headsTitle.textContent = `Head weights of “${tokenText(result.tokens[index]).trim()}”`;
    ui.headsHint.textContent = 'w = max(image score − text score, 0) per layer (rows) and head (columns), paper Eq. 5.';
  } else {
    const total = result.tokenWeights.reduce((a, b) => a + b, 0) || 1;
    rows = Array.from({ length: Lu }, (_, u) =>
      Array.from(
        { length: H },
        (_, h) => weights.reduce((sum, w, n) => sum + w[u][h] * result.tokenWeights[n], 0) / total,
      ),
    );
    ui.headsTitle.textContent = 'Head weights, whole answer';
    ui.headsHint.textContent =
      'Mean over tokens weighted by δ; select a token for its own. Rows: layers, columns: heads.';
  }
  const max = Math.max(...rows.flat(), 1e-12);
  const cells: HTMLElement[] = [];
  const corner = document.createElement('span');
  corner.className = 'label';
  cells.push(corner);
  for (let h = 0; h < H; h++) {
    const l = document.createElement('span');
    l.className = 'label';
    l.textContent = `h${h}`;
    cells.push(l);
  }
  rows.forEach((row, u) => {
    const l = document.createElement('span');
    l.className = 'label';
    l.textContent = `L${result.layersUsed[u]}`;
    cells.push(l);
    row.forEach((w, h) => {
      const c = document.createElement('span');
      c.className = 'cell';
      c.style.setProperty('--v', (w / max).toFixed(3));
      c.title = `layer ${result.layersUsed[u]}, head ${h}: ${w.toFixed(4)}`;
      if (H <= 12) c.textContent = w.toFixed(2);
      cells.push(c);
    });
  });
  ui.headsGrid.style.setProperty('--heads', String(H));
  ui.headsGrid.setAttribute('aria-label', `${ui.headsTitle.textContent}: ${Lu} layers by ${H} heads`);
  ui.headsGrid.replaceChildren(...cells);
}

// ---- exports (same files and names as the CLI's)

const safeName = (token: string) => token.replace(/[^\p{L}\p{N}_-]+/gu, '_').slice(0, 24) || '_';

function download(blob: Blob, name: string) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

async function exportPng() {
  const result = state.explained?.result;
  const image = render(state.selected);
  if (!result || !image) return;
  const name =
    state.selected < 0
      ? `sentence${filtered() ? '' : '-unfiltered'}.png`
      : `${String(state.selected).padStart(2, '0')}-${safeName(result.tokens[state.selected])}${filtered() ? '' : '-unfiltered'}.png`;
  download(await encodePng(image), name);
}

async function exportZip() {
  const result = state.explained?.result;
  if (!result || state.busy) return;
  setBusy(true);
  ui.exportZip.disabled = true;
  setStatus(`Packing ${2 * result.tokens.length + 2} overlays…`);
  try {
    await packZip(result);
    setStatus('Saved dexar-overlays.zip.', 'done');
  } catch (error) {
    fail(error);
  } finally {
    ui.exportZip.disabled = false;
    setBusy(false);
  }
}

async function packZip(result: Explanation) {
  const files: { name: string; bytes: Uint8Array }[] = [];
  const add = async (name: string, index: number, useFiltered: boolean) => {
    const image = render(index, useFiltered);
    if (image) files.push({ name, bytes: await encodePngBytes(image) });
  };
  await add('sentence.png', -1, true);
  await add('sentence-unfiltered.png', -1, false);
  for (let n = 0; n < result.tokens.length; n++) {
    const base = `${String(n).padStart(2, '0')}-${safeName(result.tokens[n])}.png`;
    await add(`tokens/${base}`, n, true);
    await add(`tokens-unfiltered/${base}`, n, false);
  }
  files.push({ name: 'result.json', bytes: new TextEncoder().encode(`${JSON.stringify(result)}\n`) });
  download(new Blob([zip(files) as Uint8Array<ArrayBuffer>], { type: 'application/zip' }), 'dexar-overlays.zip');
}

function exportJson() {
  const result = state.explained?.result;
  if (!result) return;
  download(new Blob([`${JSON.stringify(result)}\n`], { type: 'application/json' }), 'result.json');
}

// ---- events

ui.drop.addEventListener('click', () => ui.imageInput.click());
ui.imageInput.addEventListener('change', () => {
  const file = ui.imageInput.files?.[0];
  if (file) void imageFromFile(file);
  ui.imageInput.value = '';
});
for (const type of ['dragenter', 'dragover'] as const) {
  ui.drop.addEventListener(type, (e) => {
    e.preventDefault();
    ui.drop.classList.add('dragging');
  });
}
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('dragging'));
ui.drop.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.drop.classList.remove('dragging');
  const file = e.dataTransfer?.files?.[0];
  if (file) void imageFromFile(file);
});
// A file dropped anywhere else must not navigate away from the page.
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());

for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="mode"]')) {
  radio.addEventListener('change', () => {
    ui.target.disabled = radio.value !== 'target' || !radio.checked;
    if (!ui.target.disabled) ui.target.focus();
  });
}

ui.builtinModel.addEventListener('click', () => void openBuiltin());
ui.variant.addEventListener('change', () => {
  if (state.modelSource) void openModel(state.modelSource, state.modelLabel, ui.variant.value as Variant);
});
ui.pickModel.addEventListener('click', async () => {
  const picker = (window as { showDirectoryPicker?: (o?: object) => Promise<FileSystemDirectoryHandle> })
    .showDirectoryPicker;
  if (!picker) {
    ui.modelInput.click();
    return;
  }
  try {
    const handle = await picker({ id: 'dexar-model', mode: 'read' });
    await openModel({ kind: 'directory', handle }, handle.name);
  } catch (error) {
    if ((error as Error).name !== 'AbortError') fail(error);
  }
});
ui.modelInput.addEventListener('change', () => {
  const files = [...(ui.modelInput.files ?? [])];
  ui.modelInput.value = '';
  if (files.length === 0) return;
  const picked = files.map((file) => ({ path: file.webkitRelativePath || file.name, file }));
  const name = picked[0].path.includes('/') ? picked[0].path.split('/')[0] : 'picked files';
  void openModel({ kind: 'files', files: picked }, name);
});

ui.backend.addEventListener('change', () => void init());
ui.explain.addEventListener('click', () => void runExplain());
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !ui.explain.disabled) void runExplain();
});

ui.tokens.addEventListener('click', (e) => {
  const chip = (e.target as HTMLElement).closest<HTMLButtonElement>('.token');
  if (chip) select(Number(chip.dataset.index), true);
});
ui.tokens.addEventListener('focusin', (e) => {
  const chip = (e.target as HTMLElement).closest<HTMLButtonElement>('.token');
  if (chip && Number(chip.dataset.index) !== state.selected) select(Number(chip.dataset.index));
});
ui.tokens.addEventListener('mouseover', (e) => {
  const chip = (e.target as HTMLElement).closest<HTMLButtonElement>('.token');
  const index = chip ? Number(chip.dataset.index) : undefined;
  if (index !== state.hovered) {
    state.hovered = index;
    drawView();
  }
});
ui.tokens.addEventListener('mouseleave', () => {
  state.hovered = undefined;
  drawView();
});
ui.tokens.addEventListener('keydown', (e) => {
  const count = state.explained?.result.tokens.length ?? 0;
  const moves: Record<string, number> = {
    ArrowRight: state.selected + 1,
    ArrowDown: state.selected + 1,
    ArrowLeft: state.selected - 1,
    ArrowUp: state.selected - 1,
    Home: -1,
    End: count - 1,
  };
  if (e.key in moves) {
    e.preventDefault();
    state.hovered = undefined;
    select(moves[e.key], true);
  }
});

for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="filter"]')) {
  radio.addEventListener('change', () => {
    drawSentence();
    drawView();
  });
}
ui.opacity.addEventListener('input', () => {
  ui.opacityValue.textContent = `${ui.opacity.value}%`;
  drawSentence();
  drawView();
});
ui.colormap.addEventListener('change', () => {
  drawSentence();
  drawView();
});
ui.exportPng.addEventListener('click', () => void exportPng());
ui.exportZip.addEventListener('click', () => void exportZip());
ui.exportJson.addEventListener('click', exportJson);

// ---- automation hook (the end-to-end test): the image decoding of the pipeline (in the browser: its worker)

(globalThis as { dexarDemo?: unknown }).dexarDemo = {
  decode: (bytes: Uint8Array) => pipeline.decode(bytes),
};

// ---- go

/** Served by `dexar serve`: the model is the server's, so the page offers no model or backend of its own. */
function showServed() {
  for (const el of [ui.builtinModel, ui.pickModel, ui.backend, $('model-hint'), $('backend-label')]) el.hidden = true;
  ui.privacy.textContent = `Runs on the dexar server at ${location.host}: the image and prompt go to it, and the model stays there.`;
  ui.where.textContent = 'the image and prompt go to the dexar server that served this page; the model stays there.';
}

async function main() {
  if (served) showServed();
  try {
    const start = await pipeline.start();
    state.manifest = start.manifest;
    ui.prompt.value = start.prompt;
    if (start.expectedAnswer) ui.target.placeholder = `e.g. ${start.expectedAnswer}`;
    const image = await fetch(start.image);
    if (!image.ok) throw new Error(`${start.image}: HTTP ${image.status}`);
    await setImage(new Uint8Array(await image.arrayBuffer()), 'example.png');
    state.modelSource = start.model;
    state.modelLabel = start.label;
  } catch (error) {
    fail(error);
  }
  await init();
}

void main();
