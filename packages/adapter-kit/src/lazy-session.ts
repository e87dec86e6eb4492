import { USE_CACHE_BRANCH } from '@dexar/core/adapter';
import {
  type Backend,
  type GraphInputShapes,
  inputShapesOf,
  type ModelFolder,
  type Session,
  type TypedTensor,
} from '@dexar/core/runtime';

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
    /** The family's contract check of the decoder's inputs (`FamilyModel.checkDecoder`). */
    private readonly check: (inputs: GraphInputShapes, path: string) => void,
  ) {}

  get(): Promise<Session> {
    this.session ??= this.backend.createSession(this.folder, this.path).then(async (session) => {
      try {
        this.check(inputShapesOf(session), this.path);
      } catch (error) {
        await session.release();
        throw error;
      }
      return session.inputNames.includes(USE_CACHE_BRANCH) ? new CacheBranchSession(this.backend, session) : session;
    });
    return this.session;
  }

  async release(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session) await (await session).release();
  }
}

/**
 * A merged decoder's session: `use_cache_branch` follows the feeds, true exactly when the past is
 * not empty, so every caller feeds it as it feeds a plain decoder.
 */
class CacheBranchSession implements Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];

  constructor(
    private readonly backend: Backend,
    private readonly session: Session,
  ) {
    this.inputNames = session.inputNames.filter((name) => name !== USE_CACHE_BRANCH);
    this.outputNames = session.outputNames;
  }

  run(feeds: Readonly<Record<string, TypedTensor>>): Promise<Record<string, TypedTensor>> {
    const past = Object.entries(feeds).find(([name]) => name.startsWith('past_key_values.'))?.[1];
    const withPast = past !== undefined && (past.dims[2] ?? 0) > 0;
    return this.session.run({
      ...feeds,
      [USE_CACHE_BRANCH]: this.backend.tensor('bool', Uint8Array.of(withPast ? 1 : 0), [1]),
    });
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
