import { ModelFormatError } from '../errors.js';

/** Up to `length` bytes of one file at `offset`, fewer only at its end; bytes it returns are not written afterwards. */
export type ReadRange = (offset: number, length: number) => Promise<Uint8Array>;

/** Weights smaller than this stay in the graph: shape constants are read while building. */
const MIN_REFERENCED_BYTES = 4096;
/** Bytes read at a time between weights: a decoder's structure is a few hundred KiB. */
const WINDOW = 64 * 1024;

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** The message fields the walk descends into, by field number (onnx.proto). */
type Message = 'model' | 'graph' | 'node' | 'attribute' | 'tensor';
const CHILDREN: Record<Message, Record<number, Message>> = {
  model: { 7: 'graph' }, // ModelProto.graph
  graph: { 1: 'node', 5: 'tensor' }, // GraphProto.node, .initializer
  node: { 5: 'attribute' }, // NodeProto.attribute
  attribute: { 6: 'graph', 11: 'graph' }, // AttributeProto.g, .graphs (If and Loop bodies)
  tensor: {},
};
const TENSOR_RAW_DATA = 9;
const TENSOR_EXTERNAL_DATA = 13;
const TENSOR_DATA_LOCATION = 14;
const DATA_LOCATION_EXTERNAL = 1;

/** The model file, weights left in place, and how many of its bytes those weights are. */
export interface ModelStructure {
  /** A ModelProto: the file's fields, each initializer's large raw data replaced by a reference. */
  bytes: Uint8Array;
  referencedBytes: number;
}

/**
 * Reads an ONNX file's structure without its weights: every initializer (in every graph,
 * subgraphs included) with at least 4 KiB of raw data becomes an external-data tensor at
 * `location`, pointing at that data's offset and length in the file itself, and the data is
 * skipped, not read. A graph derived from the structure is written without copying the weights,
 * and ONNX Runtime maps them from the file (docs/architecture.md, "Weights held once"). On a
 * 487 MB decoder this reads 4 MB (64 KiB after each weight) in 0.05 s where decoding the file read all of it (1.5 s here), and the
 * structure's digest keys the explain-graph cache without hashing the weights (0.8 s): a graph that
 * references weights reads whatever they hold when it runs.
 */
export async function readModelStructure(read: ReadRange, location: string): Promise<ModelStructure> {
  const source = new WindowedFile(read);
  let referencedBytes = 0;

  /** The fields of a `kind` message in [start, end) (end Infinity: to the end of the file), re-encoded. */
  const walk = async (kind: Message, start: number, end: number): Promise<Parts> => {
    const out = new Parts();
    let elided: { offset: number; length: number } | undefined;
    let pos = start;
    while (pos < end && (end !== Number.POSITIVE_INFINITY || (await source.has(pos)))) {
      const [tag, afterTag] = await source.varint(pos);
      const field = Math.floor(tag / 8);
      const wireType = tag % 8;
      if (wireType === VARINT) {
        const [, next] = await source.varint(afterTag);
        out.push(await source.bytes(pos, next - pos));
        pos = next;
      } else if (wireType === FIXED64 || wireType === FIXED32) {
        const next = afterTag + (wireType === FIXED64 ? 8 : 4);
        out.push(await source.bytes(pos, next - pos));
        pos = next;
      } else if (wireType === LENGTH_DELIMITED) {
        const [length, payload] = await source.varint(afterTag);
        const next = payload + length;
        const child = CHILDREN[kind][field];
        if (child) {
          out.push(await source.bytes(pos, afterTag - pos));
          out.nest(await walk(child, payload, next));
        } else if (kind === 'tensor' && field === TENSOR_RAW_DATA && length >= MIN_REFERENCED_BYTES) {
          await source.bytes(next - 1, 1); // the weight's last byte is in the file: it is not truncated
          elided = { offset: payload, length };
        } else {
          out.push(await source.bytes(pos, next - pos));
        }
        pos = next;
      } else {
        throw new ModelFormatError(
          `the file has protobuf wire type ${wireType} at byte ${pos}, which ONNX never writes: it is corrupt or not ONNX; download or export it again`,
        );
      }
      if (pos > end) {
        throw new ModelFormatError(
          `a field at byte ${pos} runs past its message: the file is truncated or corrupt; download or export it again`,
        );
      }
    }
    if (elided) {
      for (const [key, value] of [
        ['location', location],
        ['offset', String(elided.offset)],
        ['length', String(elided.length)],
      ]) {
        out.pushTag(TENSOR_EXTERNAL_DATA);
        const entry = new Parts();
        entry.pushString(1, key);
        entry.pushString(2, value);
        out.nest(entry);
      }
      out.push(varintBytes((TENSOR_DATA_LOCATION << 3) | VARINT), varintBytes(DATA_LOCATION_EXTERNAL));
      referencedBytes += elided.length;
    }
    return out;
  };

  const model = await walk('model', 0, Number.POSITIVE_INFINITY);
  return { bytes: model.concat(), referencedBytes };
}

/** A message's encoded fields, lengths of nested messages computed as they are added. */
class Parts {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  /** Appends chunks; a chunk that continues the last one's bytes in the same buffer extends it. */
  push(...chunks: Uint8Array[]): void {
    for (const c of chunks) {
      const last = this.chunks[this.chunks.length - 1];
      if (last && last.buffer === c.buffer && last.byteOffset + last.length === c.byteOffset) {
        this.chunks[this.chunks.length - 1] = new Uint8Array(last.buffer, last.byteOffset, last.length + c.length);
      } else {
        this.chunks.push(c);
      }
      this.length += c.length;
    }
  }

  pushTag(field: number): void {
    this.push(varintBytes((field << 3) | LENGTH_DELIMITED));
  }

  pushString(field: number, value: string): void {
    const bytes = new TextEncoder().encode(value);
    this.pushTag(field);
    this.push(varintBytes(bytes.length), bytes);
  }

  /** A nested message, after its field's tag (already pushed). */
  nest(message: Parts): void {
    this.push(varintBytes(message.length), ...message.chunks);
  }

  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** A non-negative integer below 2^53 as a protobuf varint. */
function varintBytes(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  do {
    const low = v % 128;
    v = Math.floor(v / 128);
    out.push(v > 0 ? low | 0x80 : low);
  } while (v > 0);
  return Uint8Array.from(out);
}

/**
 * A file read through a window of recent bytes. Chunks it returns are views of a window, which is
 * replaced, never written, when it moves: they stay valid.
 */
class WindowedFile {
  private window: Uint8Array = new Uint8Array(0);
  private start = 0;

  constructor(private readonly read: ReadRange) {}

  /** Whether the file has a byte at `offset`. */
  async has(offset: number): Promise<boolean> {
    return (await this.available(offset, 1)).length > 0;
  }

  /** Exactly `length` bytes at `offset`, or a truncation error. */
  async bytes(offset: number, length: number): Promise<Uint8Array> {
    const got = await this.available(offset, length);
    if (got.length < length) {
      throw new ModelFormatError(
        `the file ends at byte ${offset + got.length} inside a field that needs ${length} bytes from ${offset}: it is truncated; download or export it again`,
      );
    }
    return got;
  }

  /**
   * A varint at `offset` and the offset after it. Its value is exact below 2^53, which tags and
   * lengths are (a message cannot exceed 2 GiB); a field's own varint value is copied, not read.
   */
  async varint(offset: number): Promise<[number, number]> {
    const bytes = await this.available(offset, 10);
    let value = 0;
    for (let i = 0, scale = 1; i < bytes.length; i++, scale *= 128) {
      value += (bytes[i] & 0x7f) * scale;
      if ((bytes[i] & 0x80) === 0) return [value, offset + i + 1];
    }
    throw new ModelFormatError(
      `the file has no complete varint at byte ${offset}: it is truncated or not ONNX; download or export it again`,
    );
  }

  /** Up to `length` bytes at `offset` (fewer at the end of the file), from the window when it holds them. */
  private async available(offset: number, length: number): Promise<Uint8Array> {
    const end = this.start + this.window.length;
    if (offset < this.start || offset + length > end) {
      this.window = await this.read(offset, Math.max(length, WINDOW));
      this.start = offset;
    }
    return this.window.subarray(offset - this.start, offset - this.start + length);
  }
}
