import {
  adapterFor,
  aggregate,
  type Backend,
  DexarError,
  type ExplainRows,
  type Explanation,
  type FamilyModel,
  layersUsed,
  type ModelFolder,
  type ProgressCallback,
  parseOptions,
  type RgbaImage,
  readJson,
  type Session,
  type TypedTensor,
  toExplanation,
} from '@dexar/core';
import type { z } from 'zod';
import { type ExplainGraphOptions, graphDigest, type OpenedExplainGraph, openExplainGraph } from './explain-graph.js';
import { type ExplainRequest, ExplainRequestSchema, type GenerateRequest, GenerateRequestSchema } from './request.js';

export interface OpenOptions {
  backend: Backend;
  folder: ModelFolder;
  onProgress?: ProgressCallback;
}

export interface Generation {
  text: string;
  tokenIds: number[];
  tokens: string[];
}

/**
 * A model opened for explanation: its family's sessions, and the explain
 * graphs built so far (one per layer range and compat), reused across calls.
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

  static async open({ backend, folder, onProgress }: OpenOptions): Promise<Explainer> {
    onProgress?.({ stage: 'load', detail: `opening ${folder.location}` });
    const config = await readJson(folder, 'config.json');
    const model = await adapterFor(config, folder.location).load(folder, backend, config);
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
    const tokenIds = await this.model.generate(input, maxNewTokens, this.onProgress);
    return {
      text: this.model.decode(tokenIds),
      tokenIds,
      tokens: this.model.tokenStrings(tokenIds),
    };
  }

  /**
   * DEX-AR for one image and prompt: the given target by teacher forcing, or
   * the model's greedy answer, explained in one run of the explain graph.
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
      gradientRows: lastRows(steps, 'gradientRows', last.gradientRows.dims[3]),
      attentionRows: lastRows(steps, 'attentionRows', last.attentionRows.dims[3]),
      logitLens: lastRows(steps, 'logitLens', 0),
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
    const graphs = await Promise.allSettled(this.explainGraphs.values());
    this.explainGraphs.clear();
    await Promise.all(graphs.flatMap((g) => (g.status === 'fulfilled' ? [g.value.session.release()] : [])));
    await this.model.release();
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
    const ids = await this.model.generate(input, r.maxNewTokens, this.onProgress);
    if (ids.length === 0) {
      throw new DexarError(
        'empty-target',
        'the model answered with end-of-sequence at once, so there is nothing to explain: give a --target',
      );
    }
    return ids;
  }

  /** SHA-256 of the decoder graph, computed once; the bytes themselves are not kept. */
  private decoderDigest?: Promise<Uint8Array>;

  /** The explain graph's session for these options, opened (or built) once per Explainer. */
  private async explainGraph(options: ExplainGraphOptions): Promise<OpenedExplainGraph> {
    this.decoderDigest ??= graphDigest(this.folder, this.model.decoder.path);
    const digest = await this.decoderDigest;
    const id = `${options.layers.join(',')}|${options.compat}|${options.positionLens}`;
    let graph = this.explainGraphs.get(id);
    if (!graph) {
      graph = openExplainGraph({
        backend: this.backend,
        folder: this.folder,
        model: this.model,
        digest,
        options,
        ...(this.onProgress ? { onProgress: this.onProgress } : {}),
      });
      this.explainGraphs.set(id, graph);
      graph.catch(() => this.explainGraphs.delete(id));
    }
    return graph;
  }
}

/**
 * Row n of step n's output, for every step, stacked into `[T, ...]`; with `keys`,
 * the last axis is zero-padded to it (a step sees fewer keys than the last).
 */
function lastRows(
  steps: readonly ExplainRows[],
  name: 'gradientRows' | 'attentionRows' | 'logitLens',
  keys: number,
): TypedTensor {
  const inner = steps[0][name].dims.slice(1, keys ? -1 : undefined);
  const width = inner.reduce((a, b) => a * b, 1);
  const K = keys || 1;
  const out = new Float32Array(steps.length * width * K);
  steps.forEach((step, n) => {
    const t = step[name];
    const k = keys ? t.dims[t.dims.length - 1] : 1;
    const data = t.data as Float32Array;
    for (let i = 0; i < width; i++)
      out.set(data.subarray((n * width + i) * k, (n * width + i + 1) * k), (n * width + i) * K);
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
