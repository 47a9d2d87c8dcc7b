/**
 * What a method running on a server can know about the call that started it: its
 * cancellation signal (aborted when the caller cancels or the server shuts down) and, for
 * async calls, the task id.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** The context of the remote call being served. */
export interface CallContext {
  /** Aborted when the caller cancels the call or the server stops. */
  signal: AbortSignal;
  /** Task id of an async call. */
  task?: string;
  /** The object and method the call is for (named in logs, e.g. when the method ends the process). */
  agent?: { cls: string; oid: string; method: string };
  /**
   * For an async call running under the server's capacity: give the slot up while waiting on
   * another server's result; the returned function takes it back (await it). Internal.
   */
  suspend?: () => () => Promise<void>;
}

/** Storage behind `currentCall()`. */
export const callContext = new AsyncLocalStorage<CallContext>();

/**
 * The remote call the current code runs for, or undefined outside a remote call.
 *
 * @example
 * @asyncFunc async crawl(url: string) {
 *   const res = await fetch(url, { signal: currentCall()?.signal });
 * }
 */
export function currentCall(): CallContext | undefined {
  return callContext.getStore();
}
