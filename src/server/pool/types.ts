/**
 * The result pool interface shared by the local (in-memory) and Redis pools. A task is
 * prepared when its async call is accepted, set once when it finishes, and may be read any
 * number of times until it expires or is evicted; then reads fail with NOT_FOUND.
 */
import type { WireError } from "../../rpc/errors.ts";

/** A finished task: its encoded value, or the error it ended with. */
export type Outcome = { ok: true; value: Uint8Array } | { ok: false; error: WireError };

/** Where async results live until they are read (and after: they stay re-readable). */
export interface ResultPool {
  /** Reserve `task` as pending. Throws ALREADY_EXISTS for a used id, RESOURCE_EXHAUSTED when full. */
  prepare(task: string): Promise<void>;
  /** Record the outcome of a prepared task (an unknown/expired task is ignored). */
  set(task: string, outcome: Outcome): Promise<void>;
  /**
   * Wait up to `timeoutMs` for the outcome. Resolves `"pending"` if it did not land in time;
   * rejects NOT_FOUND for an unknown, expired or evicted task. Event-driven: no polling.
   */
  get(task: string, timeoutMs: number, signal?: AbortSignal): Promise<Outcome | "pending">;
  /** Entries held (pending and finished). */
  size(): number;
  /** Release timers and connections. */
  close(): Promise<void>;
}

/** Options every pool takes. */
export interface PoolOptions {
  /** Most entries held; the oldest finished ones are evicted first. Default 8192. */
  maxPoolSize: number;
  /** Seconds a finished result is kept. Default 7200. */
  maxExpireTime: number;
}
