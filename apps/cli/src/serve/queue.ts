import { DexarError } from '@dexar/core';
import { HttpError } from './errors.js';

interface Job {
  start(): void;
  cancel(): void;
}

/**
 * Requests wait here for the one model: one runs at a time, at most `capacity` wait, and a
 * request whose client disconnects leaves the queue before it starts (docs: "dexar serve").
 */
export class WorkQueue {
  private readonly waiting: Job[] = [];
  private running = false;
  /** The running job, settled when it ends. */
  private current: Promise<void> = Promise.resolve();
  /** Mean seconds of the last jobs (an exponential average), for Retry-After. */
  private meanSeconds = 1;

  constructor(readonly capacity: number) {}

  get queued(): number {
    return this.waiting.length;
  }

  get busy(): boolean {
    return this.running;
  }

  /** Refuses at once when no place is free: before a large upload is read. */
  checkRoom(): void {
    if (this.waiting.length < this.capacity) return;
    const seconds = Math.max(1, Math.ceil(this.meanSeconds));
    throw new HttpError(
      503,
      'busy',
      `the server is busy: ${this.waiting.length} requests wait for the model (the limit is ${this.capacity}): retry after ${seconds} s`,
      { 'Retry-After': String(seconds) },
    );
  }

  /** Runs `work` when the model is free; rejects without running it if `signal` aborts first. */
  run<T>(work: () => Promise<T>, signal: AbortSignal): Promise<T> {
    this.checkRoom();
    if (signal.aborted) return Promise.reject(cancelled());
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => job.cancel();
      const job: Job = {
        start: () => {
          signal.removeEventListener('abort', onAbort);
          this.running = true;
          const t0 = performance.now();
          this.current = work()
            .then(resolve, reject)
            .finally(() => {
              this.meanSeconds = 0.8 * this.meanSeconds + 0.2 * ((performance.now() - t0) / 1000);
              this.running = false;
              this.next();
            });
        },
        cancel: () => {
          const at = this.waiting.indexOf(job);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(cancelled());
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(job);
      this.next();
    });
  }

  /** Drops the waiting requests; resolves when the running one has finished. */
  async close(): Promise<void> {
    for (const job of [...this.waiting]) job.cancel();
    await this.current;
  }

  private next(): void {
    if (this.running) return;
    this.waiting.shift()?.start();
  }
}

const cancelled = () => new DexarError('invalid-input', 'the client disconnected before its request ran');
