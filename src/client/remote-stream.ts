/**
 * RemoteStream: what a remote stream method (`async *` or `@streamFunc`) returns at once. It
 * pulls: each `next` request takes the items the server has ready (a batch of at most
 * `window`), and while the consumer works through them one more pull is already on its way,
 * so items flow at the transport's pipelined rate while the server never runs more than its
 * window ahead. Passed as an argument to another remote call, it travels as a reference and
 * the receiving server pulls from the producing one itself.
 *
 * A stream has one consumer: iterate it once (or hand it on once, before reading from it).
 */
import { callContext } from "../core/call-context.ts";
import { AgentServerError, CancelledError, CodecError, DeadlineExceededError, errorFromWire } from "../core/errors.ts";
import type { StreamBatch } from "../core/protocol.ts";
import type { ServerConnection } from "./connection.ts";
import type { Frame } from "../core/split-frame.ts";

/** Items one pull asks for by default (and what a server runs ahead by). */
export const DEFAULT_PULL_ITEMS = 32;

/** Where a stream's items come from and how to read them. Internal. */
export interface StreamSource {
  conn: ServerConnection;
  /** Stream id (the task id the client chose for the call). */
  id: string;
  /** Resolves when the server accepted the call; rejects with why it did not. */
  accepted: Promise<unknown>;
  /** The stream is known to exist already (a reference received from elsewhere). */
  acceptedNow?: boolean;
  decode(bytes: Frame): unknown;
  /** Longest server-side hold of one pull, ms. */
  maxWaitMs: number;
  /** Items per pull (default 32). */
  window?: number | undefined;
  /** Deadline for each item, ms: DEADLINE_EXCEEDED when the next item takes longer. */
  timeoutMs?: number | undefined;
  /** Cancels the stream: the server is told, reads reject with CANCELLED. */
  signal?: AbortSignal | undefined;
  /** This process is the stream's one consumer: dropped unread, the server is told to cancel it. */
  owned?: boolean;
}

const noop = () => {};

/** Streams dropped (garbage collected) before their end: their producers are cancelled. */
const dropped = new FinalizationRegistry<{ conn: ServerConnection; id: string; accepted: Promise<unknown> }>((h) => {
  h.accepted.then(() => h.conn.send({ t: "cancel", task: h.id }), noop).catch(noop);
});

/**
 * The items of a remote stream, as they are produced. `for await` reads them; `break`,
 * `return()`, `cancel()` or `await using` stop the producer (its `finally` runs on the server).
 *
 * @example
 * for await (const token of writer.tokens("hi")) process.stdout.write(token);
 */
export class RemoteStream<T = unknown> implements AsyncIterableIterator<T>, AsyncDisposable {
  readonly #src: StreamSource;
  #buf: T[] = [];
  #head = 0;
  /** No more items will be read: the stream ended, failed, was cancelled or handed on. */
  #end = false;
  #error: unknown;
  /** The server no longer holds the stream (it ended or failed there). */
  #serverDone = false;
  #closed = false;
  #handed = false;
  #read = false;
  #accepted: boolean;
  #pull: Promise<void> | undefined;

  constructor(src: StreamSource) {
    this.#src = src;
    this.#accepted = src.acceptedNow === true;
    if (!this.#accepted) {
      src.accepted.then(
        () => (this.#accepted = true),
        // Cancelled on its way: the server may have started it all the same (cancel() tells it).
        (e: unknown) => this.#fail(e, !(e instanceof CancelledError)),
      );
    }
    if (src.owned) dropped.register(this, { conn: src.conn, id: src.id, accepted: src.accepted }, this);
    const sig = src.signal;
    if (sig) {
      const onAbort = () => {
        this.#fail(new CancelledError("stream cancelled by its signal", src.conn.where), false);
        void this.cancel();
      };
      if (sig.aborted) queueMicrotask(onAbort);
      else sig.addEventListener("abort", onAbort, { once: true });
    }
  }

  /** The stream's id on its server. */
  get id(): string {
    return this.#src.id;
  }

  /** The server producing the items. */
  get conn(): ServerConnection {
    return this.#src.conn;
  }

  /** The server accepted the call (a reference to the stream may be handed on). */
  get isAccepted(): boolean {
    return this.#accepted;
  }

  /** Resolves when the server accepted the call. */
  get accepted(): Promise<unknown> {
    return this.#src.accepted;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next item; `done` after the last one. A failure of the stream rejects once. */
  async next(): Promise<IteratorResult<T, undefined>> {
    this.#read = true;
    for (;;) {
      if (this.#head < this.#buf.length) {
        const value = this.#buf[this.#head++]!;
        if (this.#head === this.#buf.length) {
          this.#buf = [];
          this.#head = 0;
        }
        this.#prefetch();
        return { value, done: false };
      }
      if (this.#error !== undefined) {
        const e = this.#error;
        this.#error = undefined;
        this.#end = true;
        throw e;
      }
      if (this.#end) return { value: undefined, done: true };
      await this.#waitForPull();
    }
  }

  /** Stop reading (what `break` in `for await` calls): the producer is cancelled. */
  async return(): Promise<IteratorResult<T, undefined>> {
    await this.cancel();
    return { value: undefined, done: true };
  }

  /**
   * Stop the stream: the generator's `return()` runs on the server (its `finally`), its
   * `currentCall().signal` aborts, and reads here end. Best effort when the server is gone.
   */
  async cancel(_reason?: unknown): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#end = true;
    this.#buf = [];
    this.#head = 0;
    dropped.unregister(this);
    if (this.#serverDone || this.#handed) return;
    try {
      await this.#src.accepted.catch((e: unknown) => {
        if (!(e instanceof CancelledError)) throw e;
      });
      await this.#src.conn.send({ t: "cancel", task: this.#src.id });
    } catch {
      // Refused or unreachable: nothing runs there to stop.
    }
  }

  /** `await using s = agent.tokens()`: cancels the stream if it did not end. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.cancel();
  }

  /**
   * The stream is being sent to another server, which becomes its consumer. Only a stream
   * not read from yet can be handed on (the items already here would be lost to it).
   */
  handOff(): void {
    if (this.#handed) return;
    if (this.#read || this.#pull) throw new CodecError("a RemoteStream that has been read from cannot be passed on: pass it before reading it");
    if (this.#closed) throw new CodecError("a cancelled RemoteStream cannot be passed on");
    this.#handed = true;
    this.#end = true;
    dropped.unregister(this);
  }

  /** Await a pull, with the per-item deadline and without holding a server's capacity slot. */
  async #waitForPull(): Promise<void> {
    const p = this.#startPull();
    const ms = this.#src.timeoutMs;
    const resume = callContext.getStore()?.suspend?.();
    let timer: Timer | undefined;
    try {
      if (ms === undefined) return await p;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.#fail(new DeadlineExceededError(`no item of stream ${this.#src.id} within ${ms} ms`, this.#src.conn.where), false);
          void this.cancel();
          resolve();
        }, ms);
      });
      await Promise.race([p, late]);
    } finally {
      clearTimeout(timer);
      await resume?.();
    }
  }

  /** Pull ahead while the consumer still has items, so the next batch is on its way. */
  #prefetch(): void {
    if (this.#end || this.#pull || this.#error !== undefined) return;
    if (this.#buf.length - this.#head <= (this.#src.window ?? DEFAULT_PULL_ITEMS) / 2) void this.#startPull();
  }

  #startPull(): Promise<void> {
    if (this.#pull) return this.#pull;
    const p = this.#fetch().then(() => {
      if (this.#pull === p) this.#pull = undefined;
    });
    this.#pull = p;
    return p;
  }

  /** One pull (re-sent while the server answers `pending`); never rejects: failures are kept. */
  async #fetch(): Promise<void> {
    const src = this.#src;
    try {
      if (!this.#accepted) await src.accepted;
      for (;;) {
        if (this.#end) return;
        const res = await src.conn.send({ t: "next", stream: src.id, max: src.window ?? DEFAULT_PULL_ITEMS, timeoutMs: src.maxWaitMs });
        if (this.#end) return;
        if (res.t === "pending") continue;
        if (res.t === "error") {
          this.#serverDone = true;
          throw errorFromWire(res.error, src.conn.where);
        }
        if (res.t !== "value") throw new CodecError(`expected items of stream ${src.id}, got ${res.t}`, { ...src.conn.where, code: "INTERNAL" });
        const b = src.decode(res.value) as StreamBatch | null;
        if (b === null || typeof b !== "object" || !Array.isArray(b.i)) throw new CodecError(`malformed items of stream ${src.id}`, { ...src.conn.where, code: "INTERNAL" });
        for (const x of b.i) this.#buf.push(x as T);
        if (b.end === true) {
          this.#serverDone = true;
          this.#end = true;
          dropped.unregister(this);
        }
        return;
      }
    } catch (e) {
      this.#fail(e, e instanceof AgentServerError && e.code === "UNAVAILABLE");
    }
  }

  /** Keep `e` for the consumer (after the items already here); `serverDone`: nothing to cancel there. */
  #fail(e: unknown, serverDone: boolean): void {
    if (this.#end || this.#error !== undefined) return;
    if (serverDone) this.#serverDone = true;
    this.#error = e;
    dropped.unregister(this);
  }
}
