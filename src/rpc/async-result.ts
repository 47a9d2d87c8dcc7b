/**
 * AsyncResult: the future a remote call returns at once (AgentScope's AsyncResult).
 * `await r` or `r.result()` waits for it; the outcome is cached, so it can be read again and
 * a remote error rejects every read. Passed as an argument to another remote call while still
 * pending, it travels as a reference (server, task) that the receiving server resolves itself.
 */
import type { ServerConnection } from "./connection.ts";
import { CancelledError, DeadlineExceededError, errorFromWire } from "./errors.ts";
import type { RetryStrategy } from "./retry.ts";

/** Where a task's result lives and how to fetch it. Internal. */
export interface TaskSource {
  conn: ServerConnection;
  task: string;
  /** Resolves when the server accepted the call; rejects with why it did not. */
  accepted: Promise<unknown>;
  decode(bytes: Uint8Array): unknown;
  /** Longest single server-side wait, ms (the server's `maxTimeoutSeconds`). */
  maxWaitMs: number;
  retry: RetryStrategy;
  /** The task is known to exist on its server already (a reference received from elsewhere). */
  acceptedNow?: boolean;
  /**
   * Until when (`performance.now()`) the task may not be registered on its server yet, so
   * waits are sent *fresh* (an unknown task is waited for, not NOT_FOUND). Own calls: until
   * accepted; references received before their call was accepted: a grace period.
   */
  freshUntil?: number;
  /** `performance.now()` by which the result must be in (per-call deadline). */
  deadlineAt?: number;
  /** Cancels the task: the server is told, the result rejects with CANCELLED. */
  signal?: AbortSignal;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

const TASK = Symbol("actorscope.task");

/** How long a reference received before its task was accepted may still find it missing. */
export const FRESH_GRACE_MS = 10_000;

/** Acceptance of a task nobody here can observe (a fresh reference from elsewhere). */
export const UNKNOWN_ACCEPTANCE: Promise<unknown> = new Promise(() => {});
const noop = () => {};

/** The future of a remote call. */
export class AsyncResult<T = unknown> implements PromiseLike<T> {
  #task: TaskSource | undefined;
  #accepted = false;
  #final: Promise<T> | undefined;
  #settled: Settled<T> | undefined;

  /**
   * Wrap a promise (or value) as an AsyncResult. Remote calls build theirs internally.
   */
  constructor(source: PromiseLike<T> | T | { [TASK]: TaskSource }) {
    if (source !== null && typeof source === "object" && TASK in (source as object)) {
      const src = (this.#task = (source as { [TASK]: TaskSource })[TASK]);
      this.#accepted = src.acceptedNow === true;
      src.accepted.then(() => {
        this.#accepted = true;
      }, noop);
    } else {
      this.#track(Promise.resolve(source as T | PromiseLike<T>));
    }
  }

  /** An AsyncResult whose value is fetched from a server task. Internal. */
  static fromTask<T>(src: TaskSource): AsyncResult<T> {
    return new AsyncResult<T>({ [TASK]: src });
  }

  /** `(server, task)` of a task-backed result, for references. Internal. */
  get taskSource(): TaskSource | undefined {
    return this.#task;
  }

  /** Has the server accepted the call (so a reference to its task can be handed on)? Internal. */
  get isAccepted(): boolean {
    return this.#accepted;
  }

  /** The outcome, if already known locally. Internal. */
  get settled(): Settled<T> | undefined {
    return this.#settled;
  }

  /** The promise a promise-backed result wraps (pending or not). Internal. */
  get pending(): Promise<T> | undefined {
    return this.#task ? undefined : this.#final;
  }

  /**
   * Wait for the value. `timeoutMs` bounds this wait in all (DEADLINE_EXCEEDED, not cached:
   * a later read may still succeed); otherwise the retry strategy bounds it.
   */
  result(timeoutMs?: number): Promise<T> {
    if (this.#final) return this.#final;
    const src = this.#task!;
    if (timeoutMs !== undefined) return this.#fetch(src, timeoutMs);
    if (src.deadlineAt !== undefined || src.signal) return this.#track(this.#bounded(src));
    return this.#track(this.#fetch(src, undefined));
  }

  /** A fetch under the call's own deadline and cancellation signal. */
  #bounded(src: TaskSource): Promise<T> {
    const s = src.signal;
    if (s?.aborted) return Promise.reject(this.#cancel(src));
    const fetched = this.#fetch(src, src.deadlineAt === undefined ? undefined : Math.max(0, src.deadlineAt - performance.now()));
    if (!s) return fetched;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(this.#cancel(src));
      s.addEventListener("abort", onAbort, { once: true });
      fetched.then(resolve, reject).finally(() => s.removeEventListener("abort", onAbort));
    });
  }

  #cancel(src: TaskSource): CancelledError {
    src.accepted.then(() => src.conn.send({ t: "cancel", task: src.task }), noop).catch(noop);
    return new CancelledError(`call cancelled (task ${src.task})`, src.conn.where);
  }

  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.result().then(onfulfilled, onrejected);
  }

  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.result().catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<T> {
    return this.result().finally(onfinally);
  }

  get [Symbol.toStringTag](): string {
    return "AsyncResult";
  }

  #track(p: Promise<T>): Promise<T> {
    this.#final = p;
    p.then(
      (value) => {
        this.#settled = { ok: true, value };
      },
      (error) => {
        this.#settled = { ok: false, error };
      },
    );
    return p;
  }

  async #fetch(src: TaskSource, totalMs: number | undefined): Promise<T> {
    const deadline = totalMs === undefined ? undefined : performance.now() + totalMs;
    // The first wait goes out at once, even before the call is answered: the server holds a
    // fresh wait for a task it has not seen yet. A refused call still fails this fetch at once.
    const refused = src.accepted.then(() => new Promise<never>(() => {}));
    refused.catch(noop);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        const delay = src.retry.nextDelayMs(attempt);
        if (delay === undefined) {
          throw new DeadlineExceededError(`result of task ${src.task} not ready after ${attempt} waits`, src.conn.where);
        }
        if (delay > 0) await Bun.sleep(delay);
      }
      let waitMs = src.maxWaitMs;
      if (deadline !== undefined) {
        const left = deadline - performance.now();
        if (left <= 0) throw new DeadlineExceededError(`result of task ${src.task} not ready within ${totalMs} ms`, src.conn.where);
        waitMs = Math.min(waitMs, Math.ceil(left));
      }
      const fresh = !this.#accepted && performance.now() < (src.freshUntil ?? 0);
      // The transport deadline only catches a hung server: longer than the server-side wait,
      // but never past the caller's own deadline.
      const hungMs = deadline === undefined ? waitMs + 5000 : waitMs + 50;
      const sent = src.conn.send(fresh ? { t: "wait", task: src.task, timeoutMs: waitMs, fresh } : { t: "wait", task: src.task, timeoutMs: waitMs }, { timeoutMs: hungMs });
      const res = this.#accepted ? await sent : await Promise.race([sent, refused]);
      if (res.t === "value") return src.decode(res.value) as T;
      if (res.t === "error") {
        throw errorFromWire(res.error, src.conn.where);
      }
      if (res.t !== "pending") throw new DeadlineExceededError(`unexpected answer ${res.t} to wait`, src.conn.where);
    }
  }
}
