import { hexDigest, sha256 } from '../digest.js';
import type { ExplainOptions } from './explain.js';

/**
 * Version of the explain-graph construction. Bump it whenever the emitted graph changes, so caches
 * keyed by `explainCacheKey` are invalidated.
 */
export const EXPLAIN_GRAPH_VERSION = 9;

/**
 * A stable cache key for the explain graph of a source decoder: SHA-256 (Web Crypto) over the SHA-256 of
 * the source graph bytes, the normalised options and the construction version, as 64 hex characters. The
 * weights are not hashed when they are external data (the explain graph references the same files).
 */
export async function explainCacheKey(sourceBytes: Uint8Array, options: ExplainOptions): Promise<string> {
  return explainCacheKeyFromDigest(await sha256(sourceBytes), options);
}

/**
 * `explainCacheKey` from the SHA-256 of the source graph file, for callers that hash the file
 * streaming rather than holding a large decoder in memory.
 */
export async function explainCacheKeyFromDigest(sourceSha256: Uint8Array, options: ExplainOptions): Promise<string> {
  const opts = JSON.stringify({
    v: EXPLAIN_GRAPH_VERSION,
    layers: [...options.layers],
    compat: options.compat,
    attention: options.attention,
    // each only when on, so the default explain graph keeps its key
    ...(options.positionLens ? { positionLens: true } : {}),
    ...(options.greedyTargets ? { greedyTargets: true } : {}),
  });
  const source = sourceSha256;
  const tail = new TextEncoder().encode(`\u0000dexar-explain\u0000${opts}`);
  const data = new Uint8Array(source.byteLength + tail.byteLength);
  data.set(source, 0);
  data.set(tail, source.byteLength);
  return hexDigest(await sha256(data));
}
