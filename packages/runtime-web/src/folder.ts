import { DexarError } from '@dexar/core';
import { type ModelFolder, type Variant, variantPath } from '@dexar/core/runtime';
import { type DerivedStore, derivedStore } from './cache.js';

/** Bytes downloaded so far of one file, for progress bars (`total` when the server sends a length). */
export type DownloadProgress = (event: { path: string; loaded: number; total?: number }) => void;

export interface WebFolderOptions {
  variant?: Variant;
  /** Where derived files (explain graphs) go; the page's IndexedDB store by default. */
  store?: DerivedStore;
}

/**
 * A model folder in the browser. The model's own files come from a source
 * (URLs or files the user picked); the files the Explainer derives (explain
 * graphs) go to a `DerivedStore` (IndexedDB) under `location|path`, and
 * shadow the source when both have one.
 */
export abstract class WebModelFolder implements ModelFolder {
  abstract readonly location: string;
  readonly variant: Variant;
  private readonly storeOption?: DerivedStore;

  constructor(options: WebFolderOptions = {}) {
    this.variant = options.variant ?? 'fp32';
    this.storeOption = options.store;
  }

  /** The path a folder path names in the source, variant applied to ONNX graphs (not to derived files). */
  sourcePath(path: string): string {
    return variantPath(path, this.variant);
  }

  fileName(path: string): string {
    return this.sourcePath(path).split('/').at(-1) ?? path;
  }

  protected abstract sourceExists(path: string): Promise<boolean>;
  protected abstract sourceBytes(path: string): Promise<Uint8Array>;
  /** A URL ONNX Runtime can fetch the file from itself (large external weights), when the source has one. */
  sourceUrl(_path: string): string | undefined {
    return undefined;
  }

  store(): Promise<DerivedStore> {
    return this.storeOption ? Promise.resolve(this.storeOption) : derivedStore();
  }

  private key(path: string): string {
    return `${this.location}|${path}`;
  }

  async exists(path: string): Promise<boolean> {
    if (await (await this.store()).has(this.key(path))) return true;
    return this.sourceExists(this.sourcePath(path));
  }

  async readBytes(path: string): Promise<Uint8Array> {
    const derived = await (await this.store()).get(this.key(path));
    if (derived) return derived;
    return this.sourceBytes(this.sourcePath(path));
  }

  async writeBytes(path: string, bytes: Uint8Array): Promise<void> {
    await (await this.store()).put(this.key(path), bytes);
  }

  protected missing(path: string, why: string): DexarError {
    return new DexarError(
      'missing-file',
      `cannot read ${this.location}/${path}: ${why} (is ${this.location} a complete model folder${this.variant === 'fp32' ? '' : ` with the ${this.variant} variant`}?)`,
    );
  }
}

export interface UrlFolderOptions extends WebFolderOptions {
  onDownload?: DownloadProgress;
  /** `fetch` to use (tests); the global one by default. */
  fetch?: typeof fetch;
}

/** A model folder served over HTTP: `base` is the URL of the folder that holds `config.json`. */
export class UrlModelFolder extends WebModelFolder {
  readonly location: string;
  private readonly fetchFn: typeof fetch;
  private readonly onDownload?: DownloadProgress;

  constructor(base: string | URL, options: UrlFolderOptions = {}) {
    super(options);
    const href = typeof base === 'string' ? new URL(base, globalThis.location?.href).href : base.href;
    this.location = href.replace(/\/+$/, '');
    this.fetchFn = options.fetch ?? ((...args) => globalThis.fetch(...args));
    this.onDownload = options.onDownload;
  }

  override sourceUrl(path: string): string {
    return `${this.location}/${path.split('/').map(encodeURIComponent).join('/')}`;
  }

  protected async sourceExists(path: string): Promise<boolean> {
    try {
      const response = await this.fetchFn(this.sourceUrl(path), { method: 'HEAD' });
      return response.ok;
    } catch {
      return false;
    }
  }

  protected async sourceBytes(path: string): Promise<Uint8Array> {
    let response: Response;
    try {
      response = await this.fetchFn(this.sourceUrl(path));
    } catch (error) {
      throw this.missing(path, `the request failed (${(error as Error).message})`);
    }
    if (!response.ok) throw this.missing(path, `HTTP ${response.status}`);
    const length = Number(response.headers.get('content-length')) || undefined;
    if (!response.body || !this.onDownload) return new Uint8Array(await response.arrayBuffer());
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let loaded = 0;
    this.onDownload({ path, loaded, ...(length ? { total: length } : {}) });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      this.onDownload({ path, loaded, ...(length ? { total: length } : {}) });
    }
    const bytes = new Uint8Array(loaded);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return bytes;
  }
}

/** A file with its path inside the picked folder (`onnx/decoder_model_merged.onnx`). */
export interface PickedFile {
  path: string;
  file: Blob;
}

export interface FileFolderOptions extends WebFolderOptions {
  /** The folder's name, for messages and cache keys; from the files' common top directory by default. */
  name?: string;
}

/**
 * A model folder from files the user picked: a directory (`<input
 * webkitdirectory>`, drag and drop, `showDirectoryPicker`) or loose files
 * (`<input multiple>`: `onnx/x.onnx` then matches a picked `x.onnx`).
 */
export class FileModelFolder extends WebModelFolder {
  readonly location: string;
  private readonly files = new Map<string, Blob>();
  private readonly byName = new Map<string, Blob[]>();

  constructor(files: Iterable<File | PickedFile>, options: FileFolderOptions = {}) {
    super(options);
    const entries = [...files].map((f) =>
      f instanceof Blob
        ? { path: (f as File).webkitRelativePath || (f as File).name, file: f as Blob }
        : { path: f.path, file: f.file },
    );
    // A directory input names every file "<dir>/...": drop that top directory.
    const tops = new Set(entries.map((e) => (e.path.includes('/') ? e.path.split('/')[0] : '')));
    const top = tops.size === 1 ? [...tops][0] : '';
    for (const { path, file } of entries) {
      const relative = top ? path.slice(top.length + 1) : path;
      this.files.set(relative, file);
      const name = relative.split('/').at(-1) ?? relative;
      this.byName.set(name, [...(this.byName.get(name) ?? []), file]);
    }
    this.location = `picked:${options.name ?? (top || 'files')}`;
  }

  /** The paths of every picked file. */
  paths(): string[] {
    return [...this.files.keys()].sort();
  }

  private find(path: string): Blob | undefined {
    const exact = this.files.get(path);
    if (exact) return exact;
    const candidates = this.byName.get(path.split('/').at(-1) ?? path);
    return candidates?.length === 1 ? candidates[0] : undefined;
  }

  protected async sourceExists(path: string): Promise<boolean> {
    return this.find(path) !== undefined;
  }

  protected async sourceBytes(path: string): Promise<Uint8Array> {
    const file = this.find(path);
    if (!file) throw this.missing(path, 'no such file was picked');
    return new Uint8Array(await file.arrayBuffer());
  }
}

interface DirectoryHandleLike {
  readonly kind: 'directory';
  readonly name: string;
  values(): AsyncIterable<{ kind: 'file' | 'directory'; name: string }>;
}

/**
 * The files of a directory from `showDirectoryPicker()` (or a dropped
 * folder's handle), two levels deep: the folder and its `onnx/` directory.
 */
export async function filesFromDirectory(handle: DirectoryHandleLike, depth = 2): Promise<PickedFile[]> {
  const out: PickedFile[] = [];
  const walk = async (dir: DirectoryHandleLike, prefix: string, left: number) => {
    for await (const entry of dir.values()) {
      if (entry.kind === 'file') {
        out.push({ path: prefix + entry.name, file: await (entry as unknown as FileSystemFileHandle).getFile() });
      } else if (left > 1) {
        await walk(entry as unknown as DirectoryHandleLike, `${prefix}${entry.name}/`, left - 1);
      }
    }
  };
  await walk(handle, '', depth);
  return out;
}

/** A model folder from a directory handle (`showDirectoryPicker()`). */
export async function openDirectoryHandle(
  handle: DirectoryHandleLike,
  options: WebFolderOptions = {},
): Promise<FileModelFolder> {
  return new FileModelFolder(await filesFromDirectory(handle), { ...options, name: handle.name });
}
