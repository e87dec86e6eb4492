import { type Backend, DexarError, type ModelFolder, type Session } from '@dexar/core';
import { layersOfDecoder } from './decoding.js';

/**
 * A decoder session opened on first use. A teacher-forced explanation runs
 * only the explain graph, so the plain decoder's weights are never loaded
 * beside it (the memory target: explanation RSS close to generation RSS).
 */
export class LazyDecoder {
  private session?: Promise<Session>;

  constructor(
    private readonly backend: Backend,
    private readonly folder: ModelFolder,
    readonly path: string,
    private readonly numLayers: number,
  ) {}

  get(): Promise<Session> {
    this.session ??= this.backend.createSession(this.folder, this.path).then((session) => {
      const layers = layersOfDecoder(session);
      if (layers !== this.numLayers) {
        throw new DexarError(
          'unsupported-model',
          `${this.folder.location}/config.json gives ${this.numLayers} decoder layers but ${this.path} has ${layers}: the config does not match the graph`,
        );
      }
      return session;
    });
    return this.session;
  }

  async release(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session) await (await session).release();
  }
}
