/**
 * Retry strategies for waiting on async results. One *attempt* is a server-side wait of up to
 * `maxTimeoutSeconds`; it ends early the moment the result lands, so the delay between
 * attempts never hides a result — it only spaces out re-asks after a wait ran out.
 *
 * Without a strategy, a result is waited for as long as its server is alive and says the task
 * is still queued or running: busy is not dead. A strategy set by the caller bounds the wait
 * instead (AgentScope's semantics: DEADLINE_EXCEEDED after its last attempt).
 */

/** Decides how many more waits to make and how long to pause before each. */
export interface RetryStrategy {
  /** Delay in ms before attempt `attempt` (1-based retry number), or `undefined` to give up. */
  nextDelayMs(attempt: number): number | undefined;
  /** A plain description (travels to child servers, shown in errors). */
  toJSON(): Record<string, unknown>;
}

/** Options of `RetryFixedTimes`. */
export interface RetryFixedTimesOptions {
  /** Retries after the first attempt. Default 20 (with 5 s waits: about 105 s in all). */
  maxRetries?: number;
  /** Seconds between attempts, jittered ×[0.5, 1.5). Default 0. */
  delay?: number;
}

/** Up to `maxRetries` more attempts, `delay` seconds apart (AgentScope's `RetryFixedTimes`). */
export class RetryFixedTimes implements RetryStrategy {
  readonly maxRetries: number;
  readonly delay: number;

  constructor(opts: RetryFixedTimesOptions = {}) {
    this.maxRetries = nonNegative(opts.maxRetries ?? 20, "maxRetries");
    this.delay = nonNegative(opts.delay ?? 0, "delay");
  }

  nextDelayMs(attempt: number): number | undefined {
    if (attempt > this.maxRetries) return undefined;
    return this.delay * 1000 * (Math.random() + 0.5);
  }

  toJSON(): Record<string, unknown> {
    return { type: "fixed", maxRetries: this.maxRetries, delay: this.delay };
  }
}

/** Options of `RetryExponential`. */
export interface RetryExponentialOptions {
  /** Retries after the first attempt. Default 10. */
  maxRetries?: number;
  /** First delay in seconds, doubled each retry. Default 1. */
  baseDelay?: number;
  /** Cap on one delay, seconds. Default 30. */
  maxDelay?: number;
}

/** Exponential back-off between attempts (AgentScope's `RetryExponential`). */
export class RetryExponential implements RetryStrategy {
  readonly maxRetries: number;
  readonly baseDelay: number;
  readonly maxDelay: number;

  constructor(opts: RetryExponentialOptions = {}) {
    this.maxRetries = nonNegative(opts.maxRetries ?? 10, "maxRetries");
    this.baseDelay = nonNegative(opts.baseDelay ?? 1, "baseDelay");
    this.maxDelay = nonNegative(opts.maxDelay ?? 30, "maxDelay");
  }

  nextDelayMs(attempt: number): number | undefined {
    if (attempt > this.maxRetries) return undefined;
    const d = this.baseDelay * 2 ** (attempt - 1) * (Math.random() + 0.5);
    return Math.min(d, this.maxDelay) * 1000;
  }

  toJSON(): Record<string, unknown> {
    return { type: "exponential", maxRetries: this.maxRetries, baseDelay: this.baseDelay, maxDelay: this.maxDelay };
  }
}

/**
 * Waits again, at once, for as long as the server answers that the task is still queued or
 * running. A server that stops answering is found out separately (liveness probe, keepalive),
 * so this never turns a busy server into DEADLINE_EXCEEDED.
 */
export class RetryWhileAlive implements RetryStrategy {
  nextDelayMs(): number {
    return 0;
  }

  toJSON(): Record<string, unknown> {
    return { type: "whileAlive" };
  }
}

/** The strategy used when none is given: wait while the server is alive. */
export const DEFAULT_RETRY: RetryStrategy = new RetryWhileAlive();

function nonNegative(n: number, what: string): number {
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0) throw new RangeError(`${what} must be a non-negative number`);
  return n;
}
