/**
 * Reading files that may be hostile. The rule is about what a path resolves to, not where it is:
 * links are followed (a Hugging Face cache snapshot links every file into `blobs/`), but only a
 * regular file is read. A device (`/dev/zero`), a FIFO, a socket or a directory is refused with
 * one line before it is opened (opening a FIFO blocks), and a file over its size limit before a
 * byte is read. Errors name the file and its kind or size, never its contents.
 */
import { constants, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { DexarError, type DexarErrorCode } from '@dexar/core';

const MiB = 1024 * 1024;

/** Size limits, in bytes, of what dexar reads. */
export const FILE_LIMITS = {
  /** An ONNX graph: protobuf messages cannot exceed 2 GiB (weights beyond that are external data). */
  graph: 2 * 1024 * MiB - 1,
  /** config.json, tokenizer.json and the other JSON and text files of a model folder (the largest tokenizers are about 35 MiB). */
  modelText: 128 * MiB,
  /** An input image file (the decoded size has its own limit). */
  image: 64 * MiB,
  /** An evaluation's records or a dataset manifest: one JavaScript string holds it. */
  records: 256 * MiB,
} as const;

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

const size = (bytes: number) => (bytes >= MiB ? `${(bytes / MiB).toFixed(0)} MiB` : `${bytes} bytes`);

export interface ReadLimit {
  /** The most bytes the file may hold. */
  maxBytes: number;
  /** What the file is, for messages ("image", "model file"). */
  what: string;
  /** The error code for a refused file; `missing-file` by default. */
  code?: DexarErrorCode;
}

/**
 * Checks that `file` resolves to a regular file within the limit, without opening it; returns its
 * size. A missing file rejects with the file system's error, for the caller to word.
 */
export async function checkRegularFile(file: string, limit: ReadLimit): Promise<number> {
  const info = await stat(file);
  checkStats(file, info, limit);
  return info.size;
}

function checkStats(file: string, info: Stats, limit: ReadLimit): void {
  const code = limit.code ?? 'missing-file';
  if (!info.isFile()) {
    throw new DexarError(code, `${limit.what} ${file} is ${kindOf(info)}: give a regular file`);
  }
  if (info.size > limit.maxBytes) {
    throw new DexarError(
      code,
      `${limit.what} ${file} is ${size(info.size)}, over the ${size(limit.maxBytes)} limit: give a smaller file`,
    );
  }
}

/**
 * Reads a regular file within the limit, or `range` of it (fewer bytes past its end). It is opened
 * non-blocking and checked again after opening, so a path swapped for a FIFO or a device in
 * between is refused too, and no more than the size it had when opened is read.
 */
export async function readRegularFile(
  file: string,
  limit: ReadLimit,
  range?: { offset: number; length: number },
): Promise<Uint8Array> {
  await checkRegularFile(file, limit);
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    checkStats(file, info, limit);
    const start = Math.min(range?.offset ?? 0, info.size);
    const bytes = new Uint8Array(range ? Math.min(range.length, info.size - start) : info.size);
    let filled = 0;
    while (filled < bytes.length) {
      const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, start + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === bytes.length ? bytes : bytes.subarray(0, filled);
  } finally {
    await handle.close();
  }
}
