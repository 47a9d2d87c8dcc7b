/**
 * The result pool interface shared by the local (in-memory) and Redis pools. A task is
 * prepared when its async call is accepted, set once when it finishes, and may be read any
 * number of times until it expires; then reads fail with NOT_FOUND.
 *
 * No unread result is ever dropped to make room: a finished result leaves the pool only when
 * it expires (`maxExpireTime`), when it has been read and its space is needed, or when its
 * owner releases it (every AsyncResult for it was dropped unread). A pool full of pending and
 * unread results refuses new tasks with RESOURCE_EXHAUSTED carrying a `retryAfterMs` hint, and
 * the client turns that into backpressure (it resubmits within the call's deadline).
 */
import type { WireError } from "../../core/errors.ts";

/** A finished task: its encoded value, or the error it ended with. */
export type Outcome = { ok: true; value: Uint8Array } | { ok: false; error: WireError };

/** Where async results live until they are read (and after: they stay re-readable). */
export interface ResultPool {
  /**
   * Reserve `task` as pending. Throws ALREADY_EXISTS for a used id; RESOURCE_EXHAUSTED (with
   * `retryAfterMs` on the error) when the pool holds `maxPoolSize` unread results — unless
   * `started`: the task already runs (a solo call not answered inline), and running tasks are
   * never refused room.
   */
  prepare(task: string, started?: boolean): Promise<void> | void;
  /** Record the outcome of a prepared task (an unknown/expired/released task is ignored). */
  set(task: string, outcome: Outcome): Promise<void> | void;
  /**
   * Wait up to `timeoutMs` for the outcome. Resolves `"pending"` if it did not land in time;
   * rejects NOT_FOUND for an unknown, expired or released task. Event-driven: no polling.
   * An outcome handed out counts as read (its space may then be reused when the pool is
   * full), unless `keep` is set: that reader handed references to the result to others.
   */
  get(task: string, timeoutMs: number, signal?: AbortSignal, keep?: boolean): Promise<Outcome | "pending">;
  /**
   * The task's owner dropped every reference to it unread: free its entry now if finished,
   * or as soon as it finishes. Unknown tasks are ignored.
   */
  release(task: string): Promise<void>;
  /**
   * The owner got the outcome of finished `task` in its call's answer: count it as read now.
   * False if the task is not finished here. Pools that cannot do this at once omit it (the
   * call is then answered with its task id, and the result read with a `wait`).
   */
  readNow?(task: string): boolean;
  /** Entries held (pending and finished). */
  size(): number;
  /** Release timers and connections. */
  close(): Promise<void>;
}

/** Options every pool takes. */
export interface PoolOptions {
  /**
   * Most finished results held; read ones make room first, and new tasks are refused
   * (momentarily) while this many are unread. Running tasks do not count. Default 8192.
   */
  maxPoolSize: number;
  /** Seconds a finished result is kept. Default 7200. */
  maxExpireTime: number;
}
