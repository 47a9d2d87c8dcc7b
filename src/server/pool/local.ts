/**
 * The in-memory result pool. Finished results are evicted oldest-first past `maxPoolSize`
 * and expire `maxExpireTime` seconds after they land. Waiters are woken by `set` directly
 * (one event loop: no lost wake-ups, no polling). Pending tasks are never evicted; when the
 * pool is full of pending tasks, new ones are refused with RESOURCE_EXHAUSTED.
 */
import { AgentServerError, NotFoundError, ResourceExhaustedError } from "../../rpc/errors.ts";
import type { Outcome, PoolOptions, ResultPool } from "./types.ts";

interface Entry {
  outcome?: Outcome;
  expiresAt: number;
  waiters?: Set<(o: Outcome) => void>;
}

/** In-memory `ResultPool`. */
export class LocalPool implements ResultPool {
  readonly #entries = new Map<string, Entry>();
  /** Finished tasks in the order they finished (= expiry order, = eviction order). */
  readonly #finished = new Map<string, true>();
  readonly #max: number;
  readonly #ttlMs: number;
  #sweeper: Timer | undefined;

  constructor(opts: PoolOptions) {
    this.#max = opts.maxPoolSize;
    this.#ttlMs = opts.maxExpireTime * 1000;
    const every = Math.max(50, Math.min(60_000, this.#ttlMs));
    this.#sweeper = setInterval(() => this.#sweep(), every);
    this.#sweeper.unref();
  }

  async prepare(task: string): Promise<void> {
    if (this.#entries.has(task)) throw new AgentServerError(`task ${task} already exists`, { code: "ALREADY_EXISTS" });
    if (this.#entries.size >= this.#max) {
      this.#sweep();
      const oldest = this.#finished.keys().next();
      if (oldest.done) throw new ResourceExhaustedError(`result pool full: ${this.#max} tasks pending`);
      this.#drop(oldest.value);
    }
    this.#entries.set(task, { expiresAt: Infinity });
  }

  async set(task: string, outcome: Outcome): Promise<void> {
    const e = this.#entries.get(task);
    if (!e || e.outcome) return;
    e.outcome = outcome;
    e.expiresAt = Date.now() + this.#ttlMs;
    this.#finished.set(task, true);
    const w = e.waiters;
    e.waiters = undefined;
    if (w) for (const wake of w) wake(outcome);
  }

  get(task: string, timeoutMs: number, signal?: AbortSignal): Promise<Outcome | "pending"> {
    const e = this.#entries.get(task);
    if (!e || e.expiresAt <= Date.now()) {
      if (e) this.#drop(task);
      return Promise.reject(new NotFoundError(`result of task ${task} not found (unknown, expired or evicted)`));
    }
    if (e.outcome) return Promise.resolve(e.outcome);
    if (timeoutMs <= 0) return Promise.resolve("pending");
    return new Promise((resolve) => {
      const waiters = (e.waiters ??= new Set());
      const done = (o: Outcome | "pending") => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        waiters.delete(wake);
        resolve(o);
      };
      const wake = (o: Outcome) => done(o);
      const onAbort = () => done("pending");
      const timer = setTimeout(() => done("pending"), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      waiters.add(wake);
    });
  }

  size(): number {
    return this.#entries.size;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  #drop(task: string): void {
    this.#entries.delete(task);
    this.#finished.delete(task);
  }

  #sweep(): void {
    const now = Date.now();
    for (const task of this.#finished.keys()) {
      const e = this.#entries.get(task);
      if (e && e.expiresAt > now) break;
      this.#drop(task);
    }
  }
}
