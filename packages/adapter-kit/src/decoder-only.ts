import { type Compat, causalTextKeys, DexarError, type Grid, type KeySpan, type TokenLayout } from '@dexar/core';
import type { ExplainRows, PixelValues, PreparedInput, ScoreBatch } from '@dexar/core/adapter';
import { type Backend, floatData, type ModelFolder, type Session, type TypedTensor } from '@dexar/core/runtime';
import { type ConfigFields, GRAPHS } from './contract.js';
import {
  type Cache,
  concatEmbeddings,
  decoderFeeds,
  type Embeddings,
  emptyCache,
  nextCache,
  syntheticCache,
} from './decoding.js';
import { chunkCallsAreCausal, explainDecoderOnly, explainFeeds } from './explain-runs.js';
import { FamilyModelBase, type FamilySettings, type OpenedSessions } from './family-model.js';
import { batchAttentionMask, batchImageFeatures, checkScoreBatch, readLogProbabilities, tileRows } from './scoring.js';
import type { TextTokenizer } from './tokenizer.js';

/** A prompt with its image features merged in. */
export interface MergedPrompt extends PreparedInput {
  readonly embeddings: Embeddings;
  /** Positions of the vision encoder's features: the image placeholder tokens. */
  readonly features: KeySpan;
  /** Positions of the grid's features (the last `grid` cells of `features`): DEX-AR's image keys. */
  readonly imageKeys: KeySpan;
  /** The vision encoder's input the features came from. */
  readonly pixels: PixelValues;
}

/** The config fields of a decoder-only family, for the contract checks' one-line errors. */
export interface DecoderOnlyFields extends ConfigFields {
  /** The field(s) the patch grid follows from, e.g. `vision_config.image_size / vision_config.patch_size`. */
  readonly grid: string;
  /** The image placeholder's token id field, e.g. `image_token_index`. */
  readonly imageTokenId: string;
}

export interface DecoderOnlySettings extends FamilySettings {
  readonly fields: DecoderOnlyFields;
  /** The patch grid of the vision encoder's features. */
  readonly grid: Grid;
  /** Features the vision encoder yields before the grid's (LLaVA's CLS with `vision_feature_select_strategy: full`). @defaultValue 0 */
  readonly leadingFeatures?: number;
  /** The token id the prompt holds at every image position. */
  readonly imageTokenId: number;
  /** Position id of the first token (0 for Llama, 1 for PaliGemma). */
  readonly firstPosition: number;
  /** The export is a prefix LM without `token_type_ids`: the prompt runs alone, bidirectionally. */
  readonly prefixCall: boolean;
}

/**
 * What every decoder-only VLM family shares: the image features merged into the prompt at its
 * placeholder tokens, teacher-forced explain runs (one pass, or two for a prefix LM), the causal
 * token layout, batched scoring. A family adds its preprocessing and prompt layout (`prepare`,
 * ending in `mergeImage`) and its official-code text-set exclusions.
 */
export abstract class DecoderOnlyModel extends FamilyModelBase<MergedPrompt> {
  readonly decoder = { path: GRAPHS.decoder, attention: 'self' } as const;
  declare protected readonly settings: DecoderOnlySettings;

  constructor(
    backend: Backend,
    folder: ModelFolder,
    tokenizer: TextTokenizer,
    /** `openSessions(folder, backend, ['vision', 'embed'])`. */
    sessions: OpenedSessions,
    settings: DecoderOnlySettings,
  ) {
    super(backend, folder, tokenizer, sessions, settings);
  }

  /**
   * Keys the authors' code leaves out of the text set in `official` mode (docs/algorithm.md, quirk
   * 2): prompt positions outside the image, or none.
   */
  protected abstract officialTextExclusions(input: MergedPrompt): number[];

  /** Teacher forcing over prompt + y_0 .. y_{T-2}; step n reads the attention row of q_n = P + n - 1. */
  async explain(
    input: MergedPrompt,
    targetIds: readonly number[],
    session: Session,
    options: { compat: Compat; perToken?: boolean },
  ): Promise<ExplainRows> {
    const outputs = await explainDecoderOnly({
      backend: this.backend,
      session,
      shape: this.settings.cache,
      prompt: input.embeddings,
      answer: await this.embed(targetIds.slice(0, -1)),
      targetIds,
      prefixCall: this.settings.prefixCall,
      perToken: options.perToken ?? false,
      firstPosition: this.settings.firstPosition,
    });
    return {
      ...outputs,
      layout: this.layout(
        input,
        targetIds.map((_, n) => n),
        options.compat,
      ),
    };
  }

  /** Whether the explain run's answer call (after the prefix call, for a prefix LM) is causal among its tokens. */
  async answerCallIsCausal(session: Session): Promise<boolean> {
    const hidden = (await this.embed([0])).hidden;
    // a prefix LM's answer call follows the prefix call: its past, of any values, takes the with-past path
    const pastLength = this.settings.prefixCall ? 2 : 0;
    const cache = syntheticCache(this.backend, this.settings.cache, pastLength);
    return chunkCallsAreCausal(hidden, async (rows) => {
      const feeds = {
        ...decoderFeeds(this.backend, rows, cache, pastLength, this.settings.firstPosition),
        ...explainFeeds(this.backend, [0], [0]),
      };
      return (await session.run(feeds)).logits;
    });
  }

  /**
   * Teacher-forced log-probabilities of the targets for B variants of the prepared input (other
   * pixel values per row, image tokens hidden per row), from one vision-encoder run over the batch
   * and one decoder run with batch B over prompt + y_0 .. y_{T-2} (two for a prefix LM: the prompt,
   * then the answer with its past). Returns `[B, T]` natural-log probabilities.
   */
  async scoreTargets(input: MergedPrompt, targetIds: readonly number[], batch: ScoreBatch): Promise<Float64Array> {
    const T = targetIds.length;
    const P = input.promptIds.length;
    const { start: i0, end: i1 } = input.imageKeys;
    const N = i1 - i0;
    const B = checkScoreBatch(batch, N, T);
    const D = input.embeddings.hidden;
    const { start: f0, end: f1 } = input.features;
    const F = f1 - f0;
    const features = batch.pixels
      ? await batchImageFeatures(this.backend, this.sessions.vision, batch.pixels, F, D)
      : undefined;
    const rowEmbeddings = (prompt: Embeddings) => {
      const S = prompt.length;
      const data = tileRows(prompt, B);
      for (let b = 0; b < B; b++) {
        if (features) {
          const perRow = features.count * D;
          data.set(features.data.subarray(b * perRow, b * perRow + F * D), (b * S + f0) * D);
        }
      }
      return this.backend.tensor('float32', data, [B, S, D]);
    };
    const mask = (total: number) => batchAttentionMask(this.backend, batch, total, i0, N);
    const positions = (start: number, length: number) =>
      this.backend.tensor(
        'int64',
        BigInt64Array.from({ length: B * length }, (_, i) =>
          BigInt(this.settings.firstPosition + start + (i % length)),
        ),
        [B, length],
      );
    const empty = emptyCache(this.backend, this.settings.cache, B);
    const decoder = await this.decoderSession.get();
    const answer = await this.embed(targetIds.slice(0, -1));
    const out = new Float64Array(B * T);
    const read = (logits: TypedTensor, position: number, n: number) =>
      readLogProbabilities(logits, position, targetIds[n], out, n, T);
    if (!this.settings.prefixCall) {
      const sequence = concatEmbeddings([input.embeddings, answer]);
      const S = sequence.length;
      const { logits } = await decoder.run({
        inputs_embeds: rowEmbeddings(sequence),
        attention_mask: mask(S),
        position_ids: positions(0, S),
        ...empty,
      });
      for (let n = 0; n < T; n++) read(logits, P - 1 + n, n);
    } else {
      const prefix = await decoder.run({
        inputs_embeds: rowEmbeddings(input.embeddings),
        attention_mask: mask(P),
        position_ids: positions(0, P),
        ...empty,
      });
      read(prefix.logits, P - 1, 0);
      if (T > 1) {
        const A = answer.length;
        const rest = await decoder.run({
          inputs_embeds: this.backend.tensor('float32', tileRows(answer, B), [B, A, D]),
          attention_mask: mask(P + A),
          position_ids: positions(P, A),
          ...nextCache(prefix),
        });
        for (let n = 1; n < T; n++) read(rest.logits, n - 1, n);
      }
    }
    return out;
  }

  /**
   * Embeds `promptIds` and writes the vision encoder's features over the prompt's image tokens: the
   * one run of `imageTokenId` in it, which must hold exactly as many tokens as the encoder yields
   * features (the grid's, after any leading ones). Only the image's size is kept, not its pixels.
   */
  protected async mergeImage(
    image: { readonly width: number; readonly height: number },
    promptIds: readonly number[],
    pixels: PixelValues,
  ): Promise<MergedPrompt> {
    const { image_features: features } = await this.sessions.vision.run({
      pixel_values: this.backend.tensor('float32', pixels.data, pixels.dims),
    });
    const [, count, hidden] = features.dims as [number, number, number];
    const { grid, fields, imageTokenId } = this.settings;
    const leading = this.settings.leadingFeatures ?? 0;
    const cells = grid.height * grid.width;
    if (count !== leading + cells) {
      throw new DexarError(
        'unsupported-model',
        `${this.location}/config.json: ${fields.grid} gives a ${grid.height} x ${grid.width} grid${leading ? ` after ${leading} leading features` : ''} (${leading + cells} features) but ${GRAPHS.vision} yields ${count}: the config does not match the graph`,
      );
    }
    const span = imageTokenSpan(promptIds, imageTokenId, `${fields.imageTokenId} ${imageTokenId}`);
    if (span.end - span.start !== count) {
      throw new DexarError(
        'invalid-input',
        `the prompt holds ${span.end - span.start} image tokens (${fields.imageTokenId} ${imageTokenId}) for ${count} image features: expand the placeholder to one token per feature before merging`,
      );
    }
    const embeddings = await this.embed(promptIds);
    embeddings.data.set(floatData(features).subarray(0, count * hidden), span.start * hidden);
    return {
      image: { width: image.width, height: image.height },
      promptIds: [...promptIds],
      embeddings,
      features: span,
      imageKeys: { start: span.start + leading, end: span.end },
      pixels,
    };
  }

  protected async generationPrefix(input: MergedPrompt): Promise<Embeddings> {
    return input.embeddings;
  }

  protected callFeeds(
    _input: MergedPrompt,
    embeddings: Embeddings,
    cache: Cache | undefined,
    pastLength: number,
  ): Record<string, TypedTensor> {
    const past = cache ?? emptyCache(this.backend, this.settings.cache);
    return decoderFeeds(this.backend, embeddings, past, pastLength, this.settings.firstPosition);
  }

  /** Step n sees the prompt and y_0 .. y_{n-1} (q_n + 1 = P + n keys); its text set is every other visible key. */
  protected layout(input: MergedPrompt, steps: readonly number[], compat: Compat): TokenLayout {
    const keyCounts = steps.map((n) => input.promptIds.length + n);
    const exclude = compat === 'official' ? this.officialTextExclusions(input) : [];
    return {
      imageKeys: input.imageKeys,
      grid: this.settings.grid,
      keyCounts,
      textKeys: causalTextKeys(keyCounts, input.imageKeys, exclude),
    };
  }
}

/** The one contiguous run of `id` in the prompt, or a one-line error. */
function imageTokenSpan(ids: readonly number[], id: number, what: string): KeySpan {
  const start = ids.indexOf(id);
  if (start < 0) {
    throw new DexarError(
      'invalid-input',
      `the prompt holds no image token (${what}): put the image placeholder in the prompt ids before merging the image`,
    );
  }
  let end = start;
  while (end < ids.length && ids[end] === id) end++;
  if (ids.indexOf(id, end) >= 0) {
    throw new DexarError(
      'invalid-input',
      `the prompt holds image tokens (${what}) at ${start} and again at ${ids.indexOf(id, end)}: give one image placeholder`,
    );
  }
  return { start, end };
}
