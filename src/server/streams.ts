/**
 * Streams on the serving side: the table of running stream methods (`async *` methods and
 * `@streamFunc`) and their producers. A stream is pulled: the client's `next` request takes
 * the items ready (held like a wait when there are none), and the producer runs ahead of the
 * puller by at most `window` items, then pauses — giving its capacity slot up meanwhile, so a
 * stream nobody reads blocks no other call and never grows this server's memory.
 *
 * Cancellation (`cancel` with the stream id, the server closing, or nobody pulling for
 * `idleMs`) aborts `currentCall().signal` and calls the iterator's `return()`, which runs the
 * generator's `finally`. An exception in the generator is kept and answered after every item
 * produced before it has been pulled.
 */
import { callContext, type CallContext } from "../core/call-context.ts";
import { AgentServerError, NotFoundError, UnimplementedError, errorFromWire, type WireError } from "../core/errors.ts";
import type { NextRequest, Response, StreamBatch } from "../core/protocol.ts";
import type { Capacity, Slot } from "./capacity.ts";
import type { ServicerOptions } from "./servicer-options.ts";

/** Items a producer may run ahead of its puller by default. */
export const DEFAULT_STREAM_WINDOW = 32;

/** What the table needs from its servicer (read lazily: the table is made with it). */
export interface StreamDeps {
  servicer(): { capacity: Capacity; opts: ServicerOptions };
  /** Encode a batch of items (with the server's references); `method` names the source in errors. */
  encode(batch: StreamBatch, method: string): Uint8Array;
  /** An error the generator threw, as it travels. */
  userError(e: unknown): WireError;
}

/**
 * Most bytes of binary items one answer carries: large chunks go a few at a time, so a message
 * stays small enough for the transports' fast paths and the consumer gets the first sooner.
 */
const BATCH_BYTES = 256 * 1024;

/** How many of `buf`'s items the next answer takes: at most `max`, at least 1, about `BATCH_BYTES`. */
function batchSize(buf: unknown[], max: number): number {
  const n = Math.max(1, Math.min(max, buf.length));
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const x = buf[i];
    if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) bytes += x.byteLength;
    if (bytes >= BATCH_BYTES) return i + 1;
  }
  return n;
}

/** Default of `ServicerOptions.streamIdleSeconds`. */
export const DEFAULT_STREAM_IDLE_SECONDS = 7200;

interface Entry {
  id: string;
  method: string;
  it: AsyncIterator<unknown> | undefined;
  ctl: AbortController;
  ctx: CallContext;
  buf: unknown[];
  done: boolean;
  error?: WireError;
  cancelled: boolean;
  /** Pulls parked for items. */
  waiters: Array<() => void>;
  /** The paused producer, waiting for room. */
  room?: () => void;
  /** Resolves on cancel: a generator stuck in an await then no longer holds its capacity slot. */
  stopped: PromiseWithResolvers<IteratorResult<unknown>>;
  lastPull: number;
}

/** The running streams of one server. */
export class StreamTable {
  readonly #deps: StreamDeps;
  readonly #table = new Map<string, Entry>();
  #sweeper: Timer | undefined;

  constructor(deps: StreamDeps) {
    this.#deps = deps;
  }

  get #opts(): ServicerOptions {
    return this.#deps.servicer().opts;
  }

  get #window(): number {
    return Math.max(1, this.#opts.streamWindow ?? DEFAULT_STREAM_WINDOW);
  }

  get #maxHoldMs(): number {
    return this.#opts.maxTimeoutSeconds * 1000;
  }

  get #idleMs(): number {
    return (this.#opts.streamIdleSeconds ?? DEFAULT_STREAM_IDLE_SECONDS) * 1000;
  }

  get #serverId(): string {
    return this.#opts.serverId;
  }

  /** Streams running or holding unread items. */
  get size(): number {
    return this.#table.size;
  }

  /**
   * Start stream `id`: `open` calls the method (inside the call's context) and returns what it
   * returned. Counts against capacity (`admit` refuses RESOURCE_EXHAUSTED synchronously).
   */
  start(id: string | undefined, method: string, open: () => unknown, deadlineAt?: number, gone?: AbortSignal): Response {
    // The caller names the stream (so a reference to it exists at once); a caller that does
    // not knows no streams, and would leave one running that nobody can read.
    if (id === undefined) throw new UnimplementedError(`${method} is a stream method: call it through a proxy that knows its class (it returns a RemoteStream)`);
    if (this.#table.has(id)) throw new AgentServerError(`stream ${id} already exists`, { code: "ALREADY_EXISTS" });
    this.#deps.servicer().capacity.admit();
    const ctl = new AbortController();
    const e: Entry = { id, method, it: undefined, ctl, ctx: { signal: ctl.signal, task: id }, buf: [], done: false, cancelled: false, waiters: [], lastPull: performance.now(), stopped: Promise.withResolvers() };
    this.#table.set(id, e);
    this.#sweep();
    this.#deps.servicer().capacity
      .run((slot) => {
        e.ctx.suspend = () => slot.suspend();
        return callContext.run(e.ctx, () => this.#produce(e, open, slot));
      }, deadlineAt, gone)
      .catch((err: unknown) => this.#fail(e, err));
    return { t: "task", task: id };
  }

  async #produce(e: Entry, open: () => unknown, slot: Slot): Promise<void> {
    try {
      const src = (await open()) as AsyncIterable<unknown> | null;
      const make = src?.[Symbol.asyncIterator];
      if (typeof make !== "function") throw new TypeError(`${e.method} is a stream method but returned no AsyncIterable`);
      e.it = make.call(src);
      while (!e.cancelled) {
        if (e.buf.length >= this.#window) {
          // Full: wait for the puller, without holding a capacity slot. The waiter is set
          // first: giving the slot up may run a queued call, and with it a local puller, at once.
          const room = new Promise<void>((r) => (e.room = r));
          const resume = slot.suspend();
          await room;
          await resume();
          continue;
        }
        const r = await Promise.race([e.it.next(), e.stopped.promise]);
        if (r.done || e.cancelled) break;
        e.buf.push(r.value);
        this.#wake(e);
      }
    } catch (err) {
      if (!e.cancelled) e.error = this.#deps.userError(err);
    }
    e.done = true;
    this.#wake(e);
  }

  #fail(e: Entry, err: unknown): void {
    e.error ??= this.#deps.userError(err);
    e.done = true;
    this.#wake(e);
  }

  #wake(e: Entry): void {
    const w = e.waiters;
    if (w.length === 0) return;
    e.waiters = [];
    for (const f of w) f();
  }

  /** Answer a pull: the items ready (at most `max`), held up to its timeout when none are. */
  async next(req: NextRequest, signal?: AbortSignal): Promise<Response> {
    const e = this.#table.get(req.stream);
    if (!e) throw new NotFoundError(`stream ${req.stream} not found on server ${this.#serverId} (finished, cancelled or expired)`);
    e.lastPull = performance.now();
    if (e.buf.length === 0 && !e.done) {
      const ms = Math.max(0, Math.min(req.timeoutMs, this.#maxHoldMs));
      await this.#park(e, ms, signal);
      e.lastPull = performance.now();
      if (e.buf.length === 0 && !e.done) return { t: "pending" };
    }
    if (e.buf.length === 0) {
      this.#table.delete(e.id);
      return e.error ? { t: "error", error: e.error } : { t: "value", value: this.#deps.encode({ i: [], end: true }, e.method) };
    }
    const n = batchSize(e.buf, req.max);
    const items = n === e.buf.length ? e.buf : e.buf.slice(0, n);
    e.buf = n === e.buf.length ? [] : e.buf.slice(n);
    const batch: StreamBatch = { i: items };
    if (e.done && e.buf.length === 0 && !e.error) {
      batch.end = true;
      this.#table.delete(e.id);
    }
    const room = e.room;
    e.room = undefined;
    room?.();
    try {
      return { t: "value", value: this.#deps.encode(batch, e.method) };
    } catch (err) {
      this.cancel(e.id);
      throw err;
    }
  }

  #park(e: Entry, ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        const i = e.waiters.indexOf(done);
        if (i >= 0) e.waiters.splice(i, 1);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      e.waiters.push(done);
    });
  }

  /** Stop stream `id`: its signal aborts, its generator's `finally` runs; false if unknown. */
  cancel(id: string): boolean {
    const e = this.#table.get(id);
    if (!e) return false;
    this.#table.delete(id);
    e.cancelled = true;
    e.buf = [];
    e.ctl.abort();
    e.stopped.resolve({ done: true, value: undefined });
    const room = e.room;
    e.room = undefined;
    room?.();
    const it = e.it;
    if (it?.return) callContext.run(e.ctx, () => Promise.resolve(it.return!()).catch(() => {}));
    this.#wake(e);
    return true;
  }

  /**
   * The items of local stream `id` as an AsyncIterable (a stream of this server handed back
   * to it as an argument): pulled straight from the table, no encoding.
   */
  local(id: string): AsyncIterable<unknown> | undefined {
    if (!this.#table.has(id)) return undefined;
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        let finished = false;
        try {
          for (;;) {
            const e = self.#table.get(id);
            if (!e) throw new NotFoundError(`stream ${id} was cancelled`);
            if (e.buf.length === 0 && !e.done) {
              // The consumer's call gives its slot up meanwhile: the producer may need it.
              const resume = callContext.getStore()?.suspend?.();
              await self.#park(e, self.#maxHoldMs, e.ctx.signal);
              await resume?.();
              continue;
            }
            if (e.buf.length === 0) {
              self.#table.delete(id);
              finished = true;
              if (e.error) throw errorFromWire(e.error, { host: `server ${self.#serverId}`, port: undefined });
              return;
            }
            const items = e.buf;
            e.buf = [];
            const room = e.room;
            e.room = undefined;
            room?.();
            yield* items;
          }
        } finally {
          if (!finished) self.cancel(id);
        }
      },
    };
  }

  /** Cancel every stream (the server stops). */
  close(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const id of [...this.#table.keys()]) this.cancel(id);
  }

  /** Cancel streams nobody pulled for `idleMs` (their consumer is gone). */
  #sweep(): void {
    if (this.#sweeper) return;
    const every = Math.max(1000, Math.min(60_000, this.#idleMs / 4));
    this.#sweeper = setInterval(() => {
      const old = performance.now() - this.#idleMs;
      for (const e of [...this.#table.values()]) if (e.lastPull < old && e.waiters.length === 0) this.cancel(e.id);
      if (this.#table.size === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
      }
    }, every);
    this.#sweeper.unref();
  }
}
