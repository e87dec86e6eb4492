import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { DexarError, type ModelFolder } from '@dexar/core';

/** Weight variants exported beside the fp32 graphs, chosen by file-name suffix (`decoder_model_merged_fp16.onnx`). */
export type Variant = 'fp32' | 'fp16' | 'q4' | 'q8' | 'quantized' | 'int8' | 'uint8' | 'bnb4' | 'q4f16';

/** A model directory on disk. A variant rewrites `onnx/NAME.onnx` to `onnx/NAME_<variant>.onnx`. */
export class NodeModelFolder implements ModelFolder {
  readonly location: string;
  constructor(
    directory: string,
    readonly variant: Variant = 'fp32',
  ) {
    this.location = resolve(directory);
  }

  /** The file a folder path names on disk, variant applied to ONNX graphs (not to derived files). */
  filePath(path: string): string {
    const variantPath =
      this.variant !== 'fp32' && /^onnx\/[^/]+(?<!\.dexar-[0-9a-f]+)\.onnx$/.test(path)
        ? path.replace(/\.onnx$/, `_${this.variant}.onnx`)
        : path;
    return join(this.location, variantPath);
  }

  async exists(path: string): Promise<boolean> {
    return access(this.filePath(path)).then(
      () => true,
      () => false,
    );
  }

  async readBytes(path: string): Promise<Uint8Array> {
    const file = this.filePath(path);
    try {
      return new Uint8Array(await readFile(file));
    } catch (error) {
      throw new DexarError(
        'missing-file',
        `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error} (is ${this.location} a complete model folder${this.variant === 'fp32' ? '' : ` with the ${this.variant} variant`}?)`,
        { cause: error },
      );
    }
  }

  /** Streams the file through SHA-256: a multi-gigabyte decoder is never held in memory to key its cache. */
  async sha256(path: string): Promise<Uint8Array> {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(this.filePath(path))) hash.update(chunk as Buffer);
    return new Uint8Array(hash.digest());
  }

  async writeBytes(path: string, bytes: Uint8Array): Promise<void> {
    await writeAtomically(this.filePath(path), bytes);
  }
}

/** Opens a model directory, failing with a one-line error when it is not one. */
export async function openModelFolder(directory: string, variant: Variant = 'fp32'): Promise<NodeModelFolder> {
  const info = await stat(directory).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new DexarError(
      'missing-file',
      `model folder ${directory} does not exist: pass a folder with config.json and onnx/ (the built-in model is models/shapes-llava)`,
    );
  }
  const folder = new NodeModelFolder(directory, variant);
  if (!(await folder.exists('config.json'))) {
    throw new DexarError(
      'missing-file',
      `${folder.location} has no config.json: pass a model folder in the transformers.js layout (config.json, tokenizer.json, onnx/*.onnx)`,
    );
  }
  return folder;
}

/** Writes to a temporary name in the same directory, then renames: readers never see half a file. */
export async function writeAtomically(file: string, bytes: Uint8Array | string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temporary, bytes);
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
