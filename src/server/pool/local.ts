/**
 * The in-memory result pool. An entry is pending until its task finishes, then unread until
 * someone reads it, then read. Only read entries make room for new ones (least recently read
 * first); pending and unread entries are never evicted, so a result that was produced is
 * never thrown away before anyone saw it. Finished entries expire `maxExpireTime` seconds
 * after they land, read or not; an owner may release an entry it will never read. When the
 * pool holds `maxPoolSize` unread results, new tasks are refused with RESOURCE_EXHAUSTED and
 * a `retryAfterMs` hint (the client's backpressure resubmits). Running tasks are not refused
 * room: they are bounded by the server's capacity and queue, and each result they produce is
 * kept, so at most `maxPoolSize` + running + queued results are held.
 * Waiters are woken by `set` directly (one event loop: no lost wake-ups, no polling).
 */
import { AgentServerError, NotFoundError, ResourceExhaustedError } from "../../core/errors.ts";
import { TaskQueue } from "./task-queue.ts";
import type { Outcome, PoolOptions, ResultPool } from "./types.ts";

const PENDING = 0;
const UNREAD = 1;
const READ = 2;

interface Entry {
  outcome?: Outcome;
  expiresAt: number;
  waiters?: Set<Waiter>;
  /** Released by its owner while still pending: dropped as soon as it finishes. */
  released?: boolean;
  state: typeof PENDING | typeof UNREAD | typeof READ;
  /** Its latest slot in the unread or read queue (older slots of it are stale). */
  seq: number;
}

interface Waiter {
  wake(o: Outcome): void;
  /** This reader's read does not count (it handed references to the result on). */
  keep: boolean;
}

/**
 * Suggested pause before a refused task is submitted again: long enough for a burst of
 * readers to free room, short enough that a caller barely notices.
 */
export const POOL_FULL_RETRY_AFTER_MS = 20;

/** In-memory `ResultPool`. */
export class LocalPool implements ResultPool {
  readonly #entries = new Map<string, Entry>();
  /** Finished, never read: in the order they finished (= expiry order). */
  readonly #unread = new TaskQueue();
  #unreadCount = 0;
  /** Finished and read at least once: least recently read first (= eviction order). */
  readonly #read = new TaskQueue();
  #readCount = 0;
  #seq = 0;
  /** Tasks running (prepared, not finished). */
  #pending = 0;
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

  /** `started`: the task already runs (a solo call not answered inline) — never refused for room. */
  prepare(task: string, started = false): void {
    if (this.#entries.has(task)) throw new AgentServerError(`task ${task} already exists`, { code: "ALREADY_EXISTS" });
    // Running tasks do not count against the pool (the server's capacity and queue bound
    // them): refusing a task because others are still running would let chains of agents
    // awaiting each other across servers refuse the very tasks that read, and so free, the
    // results filling the pool. Results not read yet do count.
    if (!started && this.#unreadCount >= this.#max) this.#sweepUnread(Date.now());
    if (!started && this.#unreadCount >= this.#max) {
      throw new ResourceExhaustedError(
        `result pool full: ${this.#unreadCount} results not read yet (maxPoolSize ${this.#max}; ${this.#pending} tasks running)`,
        { retryAfterMs: POOL_FULL_RETRY_AFTER_MS },
      );
    }
    // Room for one more: the least recently read results go first — a sixteenth of the pool
    // at a time, so a full pool does not evict for every new task.
    if (this.#entries.size - this.#pending >= this.#max) {
      let n = Math.max(1, this.#entries.size - this.#pending - this.#max + 1 + (this.#max >> 4));
      for (let slot = this.#read.peek(); slot && n > 0; slot = this.#read.peek()) {
        this.#read.shift();
        const e = this.#entries.get(slot.task);
        if (!e || e.state !== READ || e.seq !== slot.seq) continue;
        this.#drop(slot.task, e);
        n--;
      }
    }
    this.#entries.set(task, { expiresAt: Infinity, state: PENDING, seq: 0 });
    this.#pending++;
  }

  set(task: string, outcome: Outcome): void {
    const e = this.#entries.get(task);
    if (!e || e.outcome) return;
    this.#pending--;
    const w = e.waiters;
    e.waiters = undefined;
    if (e.released && !w) {
      this.#entries.delete(task);
      return;
    }
    e.outcome = outcome;
    e.expiresAt = Date.now() + this.#ttlMs;
    let read = false;
    if (w) for (const x of w) read ||= !x.keep;
    // Handed out at once to a reader whose read counts: it is read.
    if (read) this.#markRead(task, e);
    else {
      e.state = UNREAD;
      e.seq = ++this.#seq;
      this.#unread.push(task, e.seq);
      this.#unreadCount++;
    }
    if (w) for (const x of w) x.wake(outcome);
  }

  get(task: string, timeoutMs: number, signal?: AbortSignal, keep = false): Promise<Outcome | "pending"> {
    const e = this.#entries.get(task);
    if (!e || e.expiresAt <= Date.now()) {
      if (e) this.#drop(task, e);
      return Promise.reject(new NotFoundError(`result of task ${task} not found (unknown, expired or released)`));
    }
    if (e.outcome) {
      if (!keep) this.#markRead(task, e);
      return Promise.resolve(e.outcome);
    }
    if (timeoutMs <= 0 || signal?.aborted) return Promise.resolve("pending");
    return new Promise((resolve) => {
      const waiters = (e.waiters ??= new Set());
      const done = (o: Outcome | "pending") => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        waiters.delete(w);
        resolve(o);
      };
      const w: Waiter = { wake: (o) => done(o), keep };
      const onAbort = () => done("pending");
      const timer = setTimeout(() => done("pending"), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      waiters.add(w);
    });
  }

  async release(task: string): Promise<void> {
    const e = this.#entries.get(task);
    if (!e) return;
    if (e.outcome) this.#drop(task, e);
    else e.released = true;
  }

  readNow(task: string): boolean {
    const e = this.#entries.get(task);
    if (!e?.outcome) return false;
    this.#markRead(task, e);
    return true;
  }

  size(): number {
    return this.#entries.size;
  }

  /** Finished results nobody has read yet. */
  unreadCount(): number {
    return this.#unreadCount;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /** Read (again): to the back of the eviction order. */
  #markRead(task: string, e: Entry): void {
    if (e.state === UNREAD) {
      this.#unreadCount--;
      this.#readCount++;
      // Most results are read soon after they land: their unread slots go stale by the
      // thousand between sweeps, so the queue is trimmed as it grows.
      if (this.#unread.length > 2 * this.#unreadCount + 1024) this.#unread.retain((t, seq) => this.#entries.get(t)?.seq === seq);
    } else if (e.state !== READ) return;
    e.state = READ;
    e.seq = ++this.#seq;
    this.#read.push(task, e.seq);
    // Results read again and again leave stale slots behind: keep the queue near its size.
    if (this.#read.length > 2 * this.#readCount + 1024) this.#read.retain((t, seq) => this.#entries.get(t)?.seq === seq);
  }

  #drop(task: string, e: Entry): void {
    if (e.state === PENDING) this.#pending--;
    else if (e.state === UNREAD) this.#unreadCount--;
    else this.#readCount--;
    this.#entries.delete(task);
  }

  /** Unread entries expire in the order they finished: stop at the first live one. */
  #sweepUnread(now: number): void {
    for (let slot = this.#unread.peek(); slot; slot = this.#unread.peek()) {
      const e = this.#entries.get(slot.task);
      if (e && e.state === UNREAD && e.seq === slot.seq) {
        if (e.expiresAt > now) break;
        this.#drop(slot.task, e);
      }
      this.#unread.shift();
    }
  }

  /** Periodic: expired entries out. Read ones are in read order, so each is checked. */
  #sweep(): void {
    const now = Date.now();
    this.#sweepUnread(now);
    this.#read.retain((task, seq) => {
      const e = this.#entries.get(task);
      if (!e || e.state !== READ || e.seq !== seq) return false;
      if (e.expiresAt > now) return true;
      this.#drop(task, e);
      return false;
    });
  }
}
