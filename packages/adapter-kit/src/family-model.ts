import type { Compat, RgbaImage, TokenLayout } from '@dexar/core';
import type {
  ExplainRows,
  FamilyModel,
  PreparedInput,
  ProgressCallback,
  ScoreBatch,
  StreamedRows,
} from '@dexar/core/adapter';
import type { Backend, GraphInputShapes, ModelFolder, Session, TypedTensor } from '@dexar/core/runtime';
import { type ConfigFields, checkDecoderInputs, GRAPHS } from './contract.js';
import { type Cache, type CacheShape, type Embeddings, embedTokens, greedyDecode } from './decoding.js';
import { streamExplainSteps } from './explain-runs.js';
import { LazyDecoder } from './lazy-session.js';
import type { TextTokenizer } from './tokenizer.js';

/** What every family's settings hold: its name, its KV cache, its end tokens and where the numbers come from. */
export interface FamilySettings {
  readonly family: string;
  /** Decoder layers, KV heads and head size, from the config. */
  readonly cache: CacheShape;
  readonly eos: readonly number[];
  /** The config fields behind `cache` (and the family's other numbers), named by the contract checks' errors. */
  readonly fields: ConfigFields;
}

/** The sessions a family opens at load time (the decoder opens on first use, see `LazyDecoder`). */
export interface OpenedSessions {
  readonly vision: Session;
  readonly embed: Session;
  readonly [graph: string]: Session;
}

/** Opens graphs of the folder by their `GRAPHS` name, in parallel. */
export async function openSessions<const K extends Exclude<keyof typeof GRAPHS, 'decoder'>>(
  folder: ModelFolder,
  backend: Backend,
  graphs: readonly K[],
): Promise<Record<K, Session>> {
  const sessions = await Promise.all(graphs.map((graph) => backend.createSession(folder, GRAPHS[graph])));
  return Object.fromEntries(graphs.map((graph, i) => [graph, sessions[i]])) as Record<K, Session>;
}

/**
 * What decoder-only and encoder-decoder families share: the tokenizer, token embeddings, the
 * decoder opened on first use and checked against the config, greedy generation and streaming with
 * the KV cache. `DecoderOnlyModel` and `EncoderDecoderModel` fill in the feeds and the token layout.
 */
export abstract class FamilyModelBase<Input extends PreparedInput, Sessions extends OpenedSessions = OpenedSessions>
  implements FamilyModel<Input>
{
  abstract readonly decoder: { readonly path: string; readonly attention: 'self' | 'cross' };
  readonly family: string;
  readonly numLayers: number;
  protected readonly decoderSession: LazyDecoder;
  /** The model folder's location, for messages. */
  protected readonly location: string;

  constructor(
    protected readonly backend: Backend,
    folder: ModelFolder,
    protected readonly tokenizer: TextTokenizer,
    protected readonly sessions: Sessions,
    protected readonly settings: FamilySettings,
  ) {
    this.family = settings.family;
    this.numLayers = settings.cache.numLayers;
    this.location = folder.location;
    this.decoderSession = new LazyDecoder(backend, folder, GRAPHS.decoder, (inputs, path) =>
      this.checkDecoder(inputs, path),
    );
  }

  abstract prepare(image: RgbaImage, prompt: string): Promise<Input>;
  abstract explain(
    input: Input,
    targetIds: readonly number[],
    session: Session,
    options: { compat: Compat; perToken?: boolean },
  ): Promise<ExplainRows>;
  abstract answerCallIsCausal(session: Session): Promise<boolean>;
  abstract scoreTargets(input: Input, targetIds: readonly number[], batch: ScoreBatch): Promise<Float64Array>;

  /** What the decoder's first generation call reads: the prompt (decoder-only) or the decoder context (encoder-decoder). */
  protected abstract generationPrefix(input: Input): Promise<Embeddings>;
  /** The feeds of one decoder call over `embeddings` after `pastLength` cached positions (an empty cache first). */
  protected abstract callFeeds(
    input: Input,
    embeddings: Embeddings,
    cache: Cache | undefined,
    pastLength: number,
  ): Record<string, TypedTensor>;
  /** The token layout of the given steps n (their key counts and text sets). */
  protected abstract layout(input: Input, steps: readonly number[], compat: Compat): TokenLayout;

  checkDecoder(inputs: GraphInputShapes, path: string): void {
    checkDecoderInputs(inputs, path, this.settings.cache, this.settings.fields, this.location);
  }

  tokenizeTarget(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  tokenStrings(ids: readonly number[]): string[] {
    return ids.map((id) => this.tokenizer.decode([id]));
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: true });
  }

  async generate(input: Input, maxNewTokens: number, onProgress?: ProgressCallback): Promise<number[]> {
    return greedyDecode({
      decoder: await this.decoderSession.get(),
      embed: (ids) => this.embed(ids),
      prefix: await this.generationPrefix(input),
      feeds: (embeddings, cache, pastLength) => this.callFeeds(input, embeddings, cache, pastLength),
      eos: this.settings.eos,
      maxNewTokens,
      ...(onProgress ? { onProgress } : {}),
    });
  }

  /** Greedy decoding on the explain graph: each call explains the token it chooses, at its last position. */
  async *stream(
    input: Input,
    maxNewTokens: number,
    session: Session,
    options: { compat: Compat },
  ): AsyncIterable<StreamedRows> {
    const steps = streamExplainSteps({
      backend: this.backend,
      session,
      embed: (ids) => this.embed(ids),
      prefix: await this.generationPrefix(input),
      feeds: (embeddings, cache, pastLength) => this.callFeeds(input, embeddings, cache, pastLength),
      eos: this.settings.eos,
      maxNewTokens,
    });
    let n = 0;
    for await (const step of steps) yield { ...step, layout: this.layout(input, [n++], options.compat) };
  }

  releaseDecoder(): Promise<void> {
    return this.decoderSession.release();
  }

  async release(): Promise<void> {
    await Promise.all([...Object.values(this.sessions), this.decoderSession].map((session) => session.release()));
  }

  protected embed(ids: readonly number[]): Promise<Embeddings> {
    return embedTokens(this.backend, this.sessions.embed, ids);
  }
}
