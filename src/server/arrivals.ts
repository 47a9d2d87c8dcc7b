/**
 * Tasks a server does not know yet. A wait may arrive before the call that creates its task
 * (it came with a reference, or rode another stream): such a *fresh* wait is parked until the
 * task is prepared here, within its time budget (bounded: `maxParked`). A call refused before
 * it became a task is remembered by its task id for a while, so its waits and references fail
 * at once with the refusal instead of waiting for a task that will never exist.
 */
import { ResourceExhaustedError, type WireError } from "../core/errors.ts";
import type { Outcome } from "./pool/types.ts";

/** How long the refusal of an async call is remembered for waits that come after it. */
export const REFUSAL_KEEP_MS = 60_000;
/** Most refusals remembered at once (the oldest are forgotten first). */
export const MAX_REFUSALS = 16_384;

/** Parked fresh waits and remembered refusals of one server. */
export class Arrivals {
  /** Parked waits by task id. */
  readonly #parked = new Map<string, Set<() => void>>();
  #count = 0;
  readonly #refused = new Map<string, { error: WireError; at: number }>();
  readonly #maxParked: number;

  constructor(maxParked: number) {
    this.#maxParked = maxParked;
  }

  /** Waits parked now (all tasks together). */
  get parked(): number {
    return this.#count;
  }

  /** `task` was prepared: wake its parked waits. */
  prepared(task: string): void {
    const early = this.#parked.get(task);
    if (early) for (const wake of [...early]) wake();
  }

  /** The call for `task` was refused with `error`: remember it, and wake its parked waits. */
  refuse(task: string, error: WireError): void {
    const now = performance.now();
    this.#refused.delete(task);
    this.#refused.set(task, { error, at: now });
    for (const [t, r] of this.#refused) {
      if (this.#refused.size <= MAX_REFUSALS && now - r.at < REFUSAL_KEEP_MS) break;
      this.#refused.delete(t);
    }
    this.prepared(task);
  }

  /** The remembered refusal of `task`, as the outcome its readers get. */
  refusal(task: string): Outcome | undefined {
    const r = this.#refused.get(task);
    if (!r) return undefined;
    if (performance.now() - r.at < REFUSAL_KEEP_MS) return { ok: false, error: r.error };
    this.#refused.delete(task);
    return undefined;
  }

  /**
   * Resolves true when `task` is prepared (or refused) within `ms`, false when the time runs
   * out or `signal` aborts; RESOURCE_EXHAUSTED when `maxParked` waits are parked already.
   */
  whenPrepared(task: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve(false);
    if (this.#count >= this.#maxParked) {
      return Promise.reject(new ResourceExhaustedError(`too many waits for tasks not known here yet (${this.#maxParked}, Limits.maxParkedWaits)`));
    }
    this.#count++;
    return new Promise((resolve) => {
      let set = this.#parked.get(task);
      if (!set) this.#parked.set(task, (set = new Set()));
      const waiters = set;
      const done = (ok: boolean) => {
        if (!waiters.has(wake)) return;
        this.#count--;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        waiters.delete(wake);
        if (waiters.size === 0 && this.#parked.get(task) === waiters) this.#parked.delete(task);
        resolve(ok);
      };
      const wake = () => done(true);
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), ms);
      signal?.addEventListener("abort", onAbort, { once: true });
      waiters.add(wake);
    });
  }
}
