/**
 * Where a browser model folder keeps the files it derives (the explain graphs
 * the Explainer builds and writes through `ModelFolder.writeBytes`). Keys
 * are `location|path`; the path already carries the cache key (the source
 * graph's hash and the options), as beside the model in Node.
 */
export interface DerivedStore {
  readonly kind: 'indexeddb' | 'memory';
  get(key: string): Promise<Uint8Array | undefined>;
  has(key: string): Promise<boolean>;
  /** One IndexedDB transaction: readers see the whole file or none of it. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  keys(): Promise<string[]>;
  clear(): Promise<void>;
}

const DB_NAME = 'dexar';
const STORE = 'derived';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** Derived files in IndexedDB (database `dexar`, store `derived`), kept across page loads. */
export class IndexedDbStore implements DerivedStore {
  readonly kind = 'indexeddb';
  private db?: Promise<IDBDatabase>;

  constructor(
    private readonly factory: IDBFactory = indexedDB,
    private readonly name = DB_NAME,
  ) {}

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise((resolve, reject) => {
      const r = this.factory.open(this.name, 1);
      r.onupgradeneeded = () => r.result.createObjectStore(STORE);
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
      r.onblocked = () => reject(new Error('the dexar IndexedDB database is blocked by another tab'));
    });
    return this.db;
  }

  private async run<T>(mode: IDBTransactionMode, fn: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.open();
    const tx = db.transaction(STORE, mode);
    const result = request(fn(tx.objectStore(STORE)));
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
    return result;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const value = await this.run('readonly', (s) => s.get(key));
    if (value === undefined) return undefined;
    if (value instanceof Blob) return new Uint8Array(await value.arrayBuffer());
    return value instanceof Uint8Array ? value : new Uint8Array(value as ArrayBuffer);
  }

  async has(key: string): Promise<boolean> {
    return (await this.run('readonly', (s) => s.count(key))) > 0;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    await this.run('readwrite', (s) => s.put(bytes, key));
  }

  async keys(): Promise<string[]> {
    return (await this.run('readonly', (s) => s.getAllKeys())).map(String);
  }

  async clear(): Promise<void> {
    await this.run('readwrite', (s) => s.clear());
  }
}

/** Derived files in memory, for the page's lifetime (where IndexedDB is unavailable, e.g. some private modes). */
export class MemoryStore implements DerivedStore {
  readonly kind = 'memory';
  private readonly files = new Map<string, Uint8Array>();
  async get(key: string) {
    return this.files.get(key);
  }
  async has(key: string) {
    return this.files.has(key);
  }
  async put(key: string, bytes: Uint8Array) {
    this.files.set(key, bytes);
  }
  async keys() {
    return [...this.files.keys()];
  }
  async clear() {
    this.files.clear();
  }
}

let shared: Promise<DerivedStore> | undefined;

/** The page's store: IndexedDB when it opens, memory otherwise. */
export function derivedStore(): Promise<DerivedStore> {
  shared ??= (async () => {
    if (typeof indexedDB === 'undefined') return new MemoryStore();
    const store = new IndexedDbStore();
    try {
      await store.keys();
      return store;
    } catch {
      return new MemoryStore();
    }
  })();
  return shared;
}
