import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { access, mkdir, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { DexarError } from '@dexar/core';
import { isDerivedFile, type ModelFolder, type Variant, variantPath } from '@dexar/core/runtime';
import { checkRegularFile, FILE_LIMITS, type ReadLimit, readRegularFile } from './files.js';

/**
 * Where derived files go when the model folder cannot take them (read-only, or something else at
 * the cache name): `DEXAR_CACHE_DIR`, else `$XDG_CACHE_HOME/dexar` (when absolute, as the XDG base
 * directory rules ask), else `~/.cache/dexar`.
 */
export function userCacheDirectory(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DEXAR_CACHE_DIR) return resolve(env.DEXAR_CACHE_DIR);
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'dexar');
}

/** Errors that mean the model folder cannot hold a derived file, so the user cache takes it. */
const UNWRITABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'EISDIR', 'ENOTDIR', 'EEXIST', 'ENOTEMPTY']);

/** A model directory on disk. A variant rewrites `onnx/NAME.onnx` to `onnx/NAME_<variant>.onnx`. */
export class NodeModelFolder implements ModelFolder {
  readonly location: string;
  /** This folder's mirror in the user cache, for derived files it cannot hold. */
  readonly cacheLocation: string;
  constructor(
    directory: string,
    readonly variant: Variant = 'fp32',
    cacheDirectory: string = userCacheDirectory(),
  ) {
    this.location = resolve(directory);
    const id = createHash('sha256').update(this.location).digest('hex').slice(0, 16);
    this.cacheLocation = join(cacheDirectory, 'explain-graphs', id);
  }

  /**
   * The file a folder path names on disk, variant applied to ONNX graphs (not to derived files).
   * A derived file the user cache holds is read from there: it is written there only when the
   * folder could not take it, and removed there when the folder later does.
   */
  filePath(path: string): string {
    if (isDerivedFile(path) && existsSync(join(this.cacheLocation, path))) return join(this.cacheLocation, path);
    return join(this.location, variantPath(path, this.variant));
  }

  fileName(path: string): string {
    return basename(this.filePath(path));
  }

  async exists(path: string): Promise<boolean> {
    return access(this.filePath(path)).then(
      () => true,
      () => false,
    );
  }

  /** The limit on a file of the folder: an ONNX graph's protobuf bound, else that of a model text file. */
  static limitOf(path: string): ReadLimit {
    return path.endsWith('.onnx')
      ? { maxBytes: FILE_LIMITS.graph, what: 'ONNX graph' }
      : { maxBytes: FILE_LIMITS.modelText, what: 'model file' };
  }

  readBytes(path: string): Promise<Uint8Array> {
    return this.read(path);
  }

  readRange(path: string, offset: number, length: number): Promise<Uint8Array> {
    return this.read(path, { offset, length });
  }

  private async read(path: string, range?: { offset: number; length: number }): Promise<Uint8Array> {
    const file = this.filePath(path);
    try {
      return await readRegularFile(file, NodeModelFolder.limitOf(path), range);
    } catch (error) {
      if (error instanceof DexarError) throw error;
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
    await checkRegularFile(this.filePath(path), NodeModelFolder.limitOf(path));
    for await (const chunk of createReadStream(this.filePath(path))) hash.update(chunk as Buffer);
    return new Uint8Array(hash.digest());
  }

  /**
   * Writes a derived file beside the files it derives from, or, where the folder is read-only or
   * something else sits at that name, into the user cache, beside links to the files of the same
   * directory (so an explain graph's external weights resolve there too).
   */
  async writeBytes(path: string, bytes: Uint8Array): Promise<void> {
    const cached = join(this.cacheLocation, path);
    if (!isDerivedFile(path)) return writeAtomically(this.filePath(path), bytes);
    try {
      await writeAtomically(join(this.location, path), bytes);
      await rm(cached, { force: true });
    } catch (error) {
      if (!UNWRITABLE.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
      await this.linkSiblings(dirname(path));
      await writeAtomically(cached, bytes);
    }
  }

  /** Links the model's files in `directory` into the cache mirror, derived files and existing links aside. */
  private async linkSiblings(directory: string): Promise<void> {
    const mirror = join(this.cacheLocation, directory);
    await mkdir(mirror, { recursive: true });
    for (const name of await readdir(join(this.location, directory))) {
      if (isDerivedFile(name) || existsSync(join(mirror, name))) continue;
      await symlink(join(this.location, directory, name), join(mirror, name));
    }
  }
}

/** Opens a model directory, failing with a one-line error when it is not one. */
export async function openModelFolder(
  directory: string,
  variant: Variant = 'fp32',
  cacheDirectory: string = userCacheDirectory(),
): Promise<NodeModelFolder> {
  const info = await stat(directory).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new DexarError(
      'missing-file',
      `model folder ${directory} does not exist: pass a folder with config.json and onnx/ (the built-in model is models/shapes-llava)`,
    );
  }
  const folder = new NodeModelFolder(directory, variant, cacheDirectory);
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
