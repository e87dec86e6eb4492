import {
  type Aggregation,
  aggregate,
  DexarError,
  type Explanation,
  heatmapRows,
  layersUsed,
  parseOptions,
  type RgbaImage,
  startAggregation,
  type TokenAggregate,
  toExplanation,
} from '@dexar/core';
import type { ExplainRows, FamilyModel, ModelAdapter, ProgressCallback, StreamedRows } from '@dexar/core/adapter';
import type { Backend, ModelFolder, Session, TypedTensor } from '@dexar/core/runtime';
import type { z } from 'zod';
import {
  type DecoderStructure,
  type ExplainGraphOptions,
  type OpenedExplainGraph,
  openExplainGraph,
  readDecoderStructure,
} from './explain-graph.js';
import { openFamilyModel } from './family.js';
import {
  type ExplainRequest,
  ExplainRequestSchema,
  type GenerateRequest,
  GenerateRequestSchema,
  type StreamRequest,
  StreamRequestSchema,
} from './request.js';

export interface OpenOptions {
  /** Runs the sessions: `nodeBackend()` from `@dexar/runtime-node`, `webBackend()` from `@dexar/runtime-web`. */
  backend: Backend;
  /** A model folder in the transformers.js layout (`config.json`, `onnx/`, tokenizer files). */
  folder: ModelFolder;
  /**
   * The model's family adapter (it must list the folder's `model_type`). When left out, the adapter
   * registered for that `model_type` (importing an adapter package registers it).
   */
  adapter?: ModelAdapter;
  /** Called at each stage (load, prepare, generate, explain, aggregate) with progress counts. */
  onProgress?: ProgressCallback;
}

export interface Generation {
  text: string;
  tokenIds: number[];
  tokens: string[];
}

/** One generated token of a stream, explained in the call that generated it. */
export interface StreamedToken {
  readonly kind: 'token';
  /** n, from 0. */
  readonly index: number;
  readonly token: string;
  readonly tokenId: number;
  /** `M_n` and `U_n`, `[gh][gw]`, as the final result's `perTokenHeatmaps[n]` (see `provisional`). */
  readonly heatmap: number[][];
  readonly heatmapUnfiltered: number[][];
  /** `delta_n` (paper Eq. 6): final. */
  readonly tokenWeight: number;
  /** `w_{n,l,h}` (paper Eq. 5), `[layersUsed][H]`: final. */
  readonly headWeights: number[][];
  /**
   * `official` mode only, when a map is constant: `official` leaves a constant map unnormalised,
   * at a value that the rescale over all tokens' gradients sets (quirk 3), so this one is provisional
   * and the final result holds its value. Every other map is final when it arrives.
   */
  readonly provisional: boolean;
}

/** The end of a stream: the whole explanation, sentence maps included (they need every token). */
export interface StreamedResult {
  readonly kind: 'result';
  readonly explanation: Explanation;
}

export type StreamEvent = StreamedToken | StreamedResult;

/**
 * A model opened for explanation: its family's sessions and the explain graph in use. Weights are
 * held once: the plain decoder (generation) and each explain graph (one per layer range and
 * compat) hold the decoder's weights, so one of them is open at a time, and opening one releases
 * the other. Explain graphs reopen from their cache, mapping their weights from the decoder file.
 * Calls run one at a time.
 */
export class Explainer {
  private readonly explainGraphs = new Map<string, Promise<OpenedExplainGraph>>();

  private constructor(
    readonly backend: Backend,
    readonly folder: ModelFolder,
    readonly model: FamilyModel,
    /** Positions the model's text model takes (`max_position_embeddings`), where its config gives them. */
    private readonly contextLength: number | undefined,
    private readonly onProgress?: ProgressCallback,
  ) {}

  static async open({ backend, folder, adapter, onProgress }: OpenOptions): Promise<Explainer> {
    onProgress?.({ stage: 'load', detail: `opening ${folder.location}` });
    const { model, config } = await openFamilyModel({ backend, folder, ...(adapter ? { adapter } : {}) });
    onProgress?.({ stage: 'load', detail: `${model.family}, ${model.numLayers} layers` });
    return new Explainer(backend, folder, model, contextLengthOf(config), onProgress);
  }

  /**
   * Refuses a sequence longer than the model's context before any session runs: past it the
   * position tables are indexed out of range, and ONNX Runtime allocates gigabytes or crashes.
   * Decoder-only models see prompt and answer as one sequence; encoder-decoder ones each apart.
   */
  private checkLength(promptTokens: number, answerTokens: number, answer: string): void {
    if (this.contextLength === undefined) return;
    const length =
      this.model.decoder.attention === 'self' ? promptTokens + answerTokens : Math.max(promptTokens, answerTokens);
    if (length > this.contextLength) {
      throw new DexarError(
        'invalid-options',
        `the prompt (${promptTokens} tokens with the image) and ${answer} (${answerTokens} tokens) exceed the model's context of ${this.contextLength} positions: shorten them`,
      );
    }
  }

  async generate(image: RgbaImage, request: GenerateRequest): Promise<Generation> {
    const { prompt, maxNewTokens } = parse(GenerateRequestSchema, request);
    this.onProgress?.({ stage: 'prepare' });
    const input = await this.model.prepare(image, prompt);
    this.checkLength(input.promptIds.length, maxNewTokens, 'the answer limit (max new tokens)');
    await this.releaseExplainGraphs();
    const tokenIds = await this.model.generate(input, maxNewTokens, this.onProgress);
    return {
      text: this.model.decode(tokenIds),
      tokenIds,
      tokens: this.model.tokenStrings(tokenIds),
    };
  }

  /**
   * DEX-AR for one image and prompt: the given target by teacher forcing in one run of the explain
   * graph, or the model's greedy answer, explained while it is generated (`stream`: one session
   * holds the weights; the stepwise strategy and the position lens generate first instead).
   */
  async explain(image: RgbaImage, request: ExplainRequest): Promise<Explanation> {
    const r = parse(ExplainRequestSchema, request);
    const options = parseOptions({ layerIndex: r.layerIndex, topK: r.topK, compat: r.compat });
    if (r.positionLens && (r.strategy !== 'single' || !r.returnRaw || this.model.decoder.attention !== 'self')) {
      throw new DexarError(
        'invalid-options',
        `positionLens needs returnRaw, the single strategy and a decoder-only family (this is ${this.model.family}, ${r.strategy})`,
      );
    }
    if (r.target === undefined && r.targetIds === undefined && r.strategy === 'single' && !r.positionLens) {
      const { prompt, maxNewTokens, returnRaw, headWeights } = r;
      for await (const event of this.stream(image, { ...options, prompt, maxNewTokens, returnRaw, headWeights })) {
        if (event.kind === 'result') return event.explanation;
      }
    }
    const layers = layersUsed(options.layerIndex, this.model.numLayers);
    this.onProgress?.({ stage: 'prepare' });
    const input = await this.model.prepare(image, r.prompt);
    if (r.target === undefined && r.targetIds === undefined) {
      this.checkLength(input.promptIds.length, r.maxNewTokens, 'the answer limit (max new tokens)');
    }
    const targetIds = await this.targetOf(input, r);
    this.checkLength(input.promptIds.length, targetIds.length, 'the target');
    const graph = await this.explainGraph({ layers, compat: options.compat, positionLens: r.positionLens });
    const runOptions = { compat: options.compat, perToken: !graph.answerCallIsCausal };
    this.onProgress?.({ stage: 'explain', done: 0, total: r.strategy === 'single' ? 1 : targetIds.length });
    const rows =
      r.strategy === 'single'
        ? await this.model.explain(input, targetIds, graph.session, runOptions)
        : await this.stepwise(image, r.prompt, targetIds, graph.session, runOptions);
    if (r.strategy === 'single') this.onProgress?.({ stage: 'explain', done: 1, total: 1 });
    this.onProgress?.({ stage: 'aggregate' });
    const gradients = { rows: rows.gradientRows as never, layers, numLayers: this.model.numLayers };
    const maps = aggregate(gradients, rows.layout, options);
    return toExplanation(maps, {
      tokens: this.model.tokenStrings(targetIds),
      tokenIds: targetIds,
      model: { family: this.model.family, path: this.folder.location },
      prompt: r.prompt,
      image: input.image,
      includeHeadWeights: r.returnRaw || r.headWeights,
      ...(r.returnRaw
        ? {
            raw: {
              layers,
              layout: rows.layout,
              gradientRows: rows.gradientRows as never,
              attentionRows: rows.attentionRows as never,
              ...(rows.positionLens ? { positionLens: rows.positionLens as never } : {}),
            },
          }
        : {}),
    });
  }

  /**
   * Explains while generating: greedy decoding runs on an explain graph that takes each target as
   * the argmax of its own logits, so every call yields the next token and its gradient rows
   * together (the KV cache carries the past). Yields each token with its map, token weight and head
   * weights as it is generated, then the whole explanation. The numbers are those of the
   * teacher-forced single pass over the same tokens (within float32 rounding).
   */
  async *stream(image: RgbaImage, request: StreamRequest): AsyncGenerator<StreamEvent> {
    const r = parse(StreamRequestSchema, request);
    const options = parseOptions({ layerIndex: r.layerIndex, topK: r.topK, compat: r.compat });
    const layers = layersUsed(options.layerIndex, this.model.numLayers);
    this.onProgress?.({ stage: 'prepare' });
    const input = await this.model.prepare(image, r.prompt);
    const graph = await this.explainGraph({ layers, compat: options.compat, positionLens: false, greedyTargets: true });
    let aggregation: Aggregation | undefined;
    const tokenIds: number[] = [];
    const steps: StreamedRows[] = []; // kept for the raw rows only
    for await (const step of this.model.stream(input, r.maxNewTokens, graph.session, { compat: options.compat })) {
      const [, , heads, keys] = step.gradientRows.dims as number[];
      aggregation ??= startAggregation({ layers, numLayers: this.model.numLayers, heads }, step.layout, options);
      const rows = { data: step.gradientRows.data as Float32Array, offset: 0, keys };
      const maps = aggregation.addToken(rows, step.layout.keyCounts[0], step.layout.textKeys[0]);
      tokenIds.push(step.tokenId);
      if (r.returnRaw) steps.push(step);
      this.onProgress?.({ stage: 'explain', done: tokenIds.length, total: r.maxNewTokens });
      const [token] = this.model.tokenStrings([step.tokenId]);
      yield streamedToken(maps, step, tokenIds.length - 1, token, heads);
    }
    if (!aggregation) throw emptyAnswer();
    this.onProgress?.({ stage: 'aggregate' });
    const explanation = toExplanation(aggregation.finish(), {
      tokens: this.model.tokenStrings(tokenIds),
      tokenIds,
      model: { family: this.model.family, path: this.folder.location },
      prompt: r.prompt,
      image: input.image,
      includeHeadWeights: r.returnRaw || r.headWeights,
      ...(r.returnRaw ? { raw: { layers, ...stackSteps(steps) } } : {}),
    });
    yield { kind: 'result', explanation };
  }

  /**
   * The authors' loop, for verification: for each token n, the whole model
   * again (image included) over prompt + y_<n, keeping the row of y_n. Costs
   * T full runs where the single pass costs one; the rows must agree.
   */
  private async stepwise(
    image: RgbaImage,
    prompt: string,
    targetIds: readonly number[],
    session: Session,
    runOptions: { compat: 'official' | 'paper'; perToken: boolean },
  ): Promise<ExplainRows> {
    const T = targetIds.length;
    const steps: ExplainRows[] = [];
    for (let n = 0; n < T; n++) {
      const input = await this.model.prepare(image, prompt);
      steps.push(await this.model.explain(input, targetIds.slice(0, n + 1), session, runOptions));
      this.onProgress?.({ stage: 'explain', done: n + 1, total: T });
    }
    const last = steps[T - 1];
    return {
      gradientRows: stackedRows(steps, 'gradientRows', last.gradientRows.dims[3], ownRow),
      attentionRows: stackedRows(steps, 'attentionRows', last.attentionRows.dims[3], ownRow),
      logitLens: stackedRows(steps, 'logitLens', 0, ownRow),
      layout: last.layout,
    };
  }

  /** Builds (or finds in the cache) the explain graph for a layer index and compat mode; returns its path. */
  async prepare(request: { layerIndex?: number; compat?: 'official' | 'paper' } = {}): Promise<string> {
    const options = parseOptions(request);
    const layers = layersUsed(options.layerIndex, this.model.numLayers);
    return (await this.explainGraph({ layers, compat: options.compat, positionLens: false })).path;
  }

  async release(): Promise<void> {
    await this.releaseExplainGraphs();
    await this.model.release();
  }

  /** Releases the open explain graphs but `except`'s. */
  private async releaseExplainGraphs(except?: string): Promise<void> {
    const others = [...this.explainGraphs].filter(([id]) => id !== except);
    for (const [id] of others) this.explainGraphs.delete(id);
    const opened = await Promise.allSettled(others.map(([, graph]) => graph));
    await Promise.all(opened.flatMap((g) => (g.status === 'fulfilled' ? [g.value.session.release()] : [])));
  }

  private async targetOf(input: Parameters<FamilyModel['generate']>[0], r: z.output<typeof ExplainRequestSchema>) {
    if (r.targetIds !== undefined || r.target !== undefined) {
      const ids = r.targetIds ?? this.model.tokenizeTarget(r.target ?? '');
      if (ids.length === 0) {
        throw new DexarError(
          'empty-target',
          'the target is empty: give the text to explain, or leave it out to explain the generated answer',
        );
      }
      return ids;
    }
    await this.releaseExplainGraphs();
    const ids = await this.model.generate(input, r.maxNewTokens, this.onProgress);
    if (ids.length === 0) throw emptyAnswer();
    return ids;
  }

  /** The decoder's structure (its weights stay in the file), read once. */
  private decoderStructure?: Promise<DecoderStructure>;

  /** The explain graph's session for these options, built once and opened alone (see the class). */
  private explainGraph(options: ExplainGraphOptions): Promise<OpenedExplainGraph> {
    const id = `${options.layers.join(',')}|${options.compat}|${options.positionLens}|${options.greedyTargets ?? false}`;
    let graph = this.explainGraphs.get(id);
    if (!graph) {
      this.decoderStructure ??= readDecoderStructure(this.folder, this.model.decoder.path);
      const released = [this.releaseExplainGraphs(id), this.model.releaseDecoder()];
      graph = Promise.all([this.decoderStructure, ...released]).then(([structure]) =>
        openExplainGraph({
          backend: this.backend,
          folder: this.folder,
          model: this.model,
          structure,
          options,
          ...(this.onProgress ? { onProgress: this.onProgress } : {}),
        }),
      );
      this.explainGraphs.set(id, graph);
      graph.catch(() => this.explainGraphs.delete(id));
    }
    return graph;
  }
}

const emptyAnswer = () =>
  new DexarError(
    'empty-target',
    'the model answered with end-of-sequence at once, so there is nothing to explain: give a --target',
  );

function streamedToken(
  maps: TokenAggregate,
  step: StreamedRows,
  index: number,
  token: string,
  heads: number,
): StreamedToken {
  const { grid } = step.layout;
  const layersUsed = maps.headWeights.length / heads;
  return {
    kind: 'token',
    index,
    token,
    tokenId: step.tokenId,
    heatmap: heatmapRows(maps.perToken, grid),
    heatmapUnfiltered: heatmapRows(maps.perTokenUnfiltered, grid),
    tokenWeight: maps.tokenWeight,
    headWeights: Array.from({ length: layersUsed }, (_, u) =>
      Array.from(maps.headWeights.subarray(u * heads, (u + 1) * heads)),
    ),
    provisional: maps.provisional,
  };
}

/** A stream's one-token steps as one explain run's raw rows and layout, `[T, layers, heads, keys]` (zero-padded keys). */
function stackSteps(steps: readonly StreamedRows[]) {
  const last = steps[steps.length - 1] as StreamedRows;
  return {
    layout: {
      imageKeys: last.layout.imageKeys,
      grid: last.layout.grid,
      keyCounts: steps.flatMap((s) => s.layout.keyCounts),
      textKeys: steps.flatMap((s) => s.layout.textKeys),
    },
    gradientRows: stackedRows(steps, 'gradientRows', last.gradientRows.dims[3], onlyRow) as never,
    attentionRows: stackedRows(steps, 'attentionRows', last.attentionRows.dims[3], onlyRow) as never,
  };
}

/**
 * Row `row(n)` of step n's output, for every step, stacked into `[T, ...]`; with `keys`, the last
 * axis is zero-padded to it (a step sees fewer keys than the last).
 */
/** Step n of the stepwise loop explains prefix y_0..y_n: its row n is y_n's. */
const ownRow = (n: number) => n;
/** A streamed step explains one token. */
const onlyRow = () => 0;

function stackedRows(
  steps: readonly ExplainRows[],
  name: 'gradientRows' | 'attentionRows' | 'logitLens',
  keys: number,
  row: (n: number) => number,
): TypedTensor {
  const inner = steps[0][name].dims.slice(1, keys ? -1 : undefined);
  const width = inner.reduce((a, b) => a * b, 1);
  const K = keys || 1;
  const out = new Float32Array(steps.length * width * K);
  steps.forEach((step, n) => {
    const t = step[name];
    const k = keys ? t.dims[t.dims.length - 1] : 1;
    const data = t.data as Float32Array;
    const from = row(n) * width;
    for (let i = 0; i < width; i++) out.set(data.subarray((from + i) * k, (from + i + 1) * k), (n * width + i) * K);
  });
  return { type: 'float32', dims: [steps.length, ...inner, ...(keys ? [keys] : [])], data: out };
}

function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DexarError('invalid-options', `invalid request: ${issue?.path.join('.') || 'value'}: ${issue?.message}`);
  }
  return parsed.data;
}

/** `max_position_embeddings` of the text model (`text_config`, as the VLM families nest it) or of the config itself. */
function contextLengthOf(config: unknown): number | undefined {
  const c = config as { max_position_embeddings?: unknown; text_config?: { max_position_embeddings?: unknown } };
  const value = c?.text_config?.max_position_embeddings ?? c?.max_position_embeddings;
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}
