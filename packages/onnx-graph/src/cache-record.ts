/**
 * The record a cached explain graph carries: its cache key (the decoder's structure and the
 * options), the SHA-256 of the model bytes before the record and, for a graph that holds copies
 * of the decoder's weights, the decoder file's SHA-256, appended as the model's last
 * `metadata_props` entry (protobuf merges fields in any order, so ONNX Runtime reads the file as
 * usual). A file at the cache name is trusted only when its record names the wanted key and its
 * bytes hash to the recorded digest: a foreign graph, a graph built with other options planted
 * under this key, or a truncated file is rebuilt instead of loaded.
 */
import protobuf from 'protobufjs/light.js';
import { hexDigest, sha256 } from './digest.js';

const RECORD_KEY = 'dexar.explain-graph';
const METADATA_PROPS = 14;
const LENGTH_DELIMITED = 2;

interface CacheRecord {
  key: string;
  sha256: string;
  /**
   * The decoder file's SHA-256 where the graph holds copies of its weights: such a graph is stale
   * once they change. A graph that references them in place reads what they hold when it runs.
   */
  weights?: string;
}

/**
 * The model bytes followed by their record: what `openExplainGraph` writes to the cache.
 * `weights`: the decoder file's SHA-256 (hex), for a graph that holds copies of its weights.
 */
export async function sealExplainGraph(model: Uint8Array, key: string, weights?: string): Promise<Uint8Array> {
  const record: CacheRecord = { key, sha256: hexDigest(await sha256(model)), ...(weights ? { weights } : {}) };
  const entry = protobuf.Writer.create()
    .uint32((METADATA_PROPS << 3) | LENGTH_DELIMITED)
    .fork()
    .uint32((1 << 3) | LENGTH_DELIMITED)
    .string(RECORD_KEY)
    .uint32((2 << 3) | LENGTH_DELIMITED)
    .string(JSON.stringify(record))
    .ldelim()
    .finish();
  const sealed = new Uint8Array(model.byteLength + entry.byteLength);
  sealed.set(model, 0);
  sealed.set(entry, model.byteLength);
  return sealed;
}

/** The record ending `bytes` and where it starts, if the file's last top-level field is one. */
function trailingRecord(bytes: Uint8Array): { start: number; record: Partial<CacheRecord> } | undefined {
  const reader = protobuf.Reader.create(bytes);
  let last: { start: number; record: Partial<CacheRecord> } | undefined;
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    last = undefined;
    if (tag === ((METADATA_PROPS << 3) | LENGTH_DELIMITED)) {
      const entry = protobuf.Reader.create(reader.bytes());
      const fields: Record<number, string> = {};
      while (entry.pos < entry.len) {
        const entryTag = entry.uint32();
        if ((entryTag & 7) === LENGTH_DELIMITED) fields[entryTag >>> 3] = entry.string();
        else entry.skipType(entryTag & 7);
      }
      if (fields[1] === RECORD_KEY) last = { start, record: JSON.parse(fields[2] ?? '{}') };
    } else {
      reader.skipType(tag & 7);
    }
  }
  return last;
}

/**
 * The record of `bytes` when they are an explain graph dexar wrote for `key`, whole and unchanged;
 * `undefined` otherwise.
 */
export async function explainGraphRecord(
  bytes: Uint8Array,
  key: string,
): Promise<Pick<CacheRecord, 'weights'> | undefined> {
  let found: ReturnType<typeof trailingRecord>;
  try {
    found = trailingRecord(bytes);
  } catch {
    return undefined; // not a protobuf message, or a truncated one
  }
  if (!found || found.record.key !== key) return undefined;
  if (found.record.sha256 !== hexDigest(await sha256(bytes.subarray(0, found.start)))) return undefined;
  const { weights } = found.record;
  return typeof weights === 'string' ? { weights } : {};
}
