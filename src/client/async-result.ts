/**
 * AsyncResult: the future a remote call returns at once (AgentScope's AsyncResult).
 * `await r` or `r.result()` waits for it; the outcome is cached, so it can be read again and
 * a remote error rejects every read. Passed as an argument to another remote call while still
 * pending, it travels as a reference (server, task) that the receiving server resolves itself.
 */
import { callContext } from "../core/call-context.ts";
import type { ServerConnection } from "./connection.ts";
import { AgentServerError, AgentServerNotAliveError, CancelledError, CodecError, DeadlineExceededError, errorFromWire } from "../core/errors.ts";
import type { Response, ValueResponse, WaitRequest } from "../core/protocol.ts";
import type { RetryStrategy } from "./retry.ts";
import type { Frame } from "../core/split-frame.ts";

/** Where a task's result lives and how to fetch it. Internal. */
export interface TaskSource {
  conn: ServerConnection;
  task: string;
  /** Resolves when the server accepted the call; rejects with why it did not. */
  accepted: Promise<unknown>;
  decode(bytes: Frame): unknown;
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
  /**
   * This process made the call (it owns the task): if every AsyncResult for it is dropped
   * unread and no reference to it was handed on, the server is told to release the result.
   */
  owned?: boolean;
  /**
   * The call asked for a hold (`CallRequest.holdMs`): `accepted` may resolve with a `value`
   * answer — the result itself, already read on the server — instead of `task`.
   */
  inline?: boolean;
  /** The caller runs `AsyncResult.accept` as the call is accepted (the result does not watch `accepted`). */
  reportsAcceptance?: boolean;
  /** A reference to the task was handed on (see `SoloState`). */
  shared?: boolean;
  /**
   * The call went out `solo` (no reference before it): a reference made before its answer
   * waits for that answer instead of naming a task its server may not keep.
   */
  sealed?: boolean;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** What `fromTask` passes the constructor (with the source in `nextTask`): no wrapper object per call. */
const FROM_TASK = Symbol("actorscope.fromTask");
let nextTask: TaskSource | undefined;

/**
 * Longest server-side hold of the first wait sent right behind its call. Short enough to ride
 * the call's batch (a long poll there would hold an HTTP/2 stream); long enough for a fast
 * task to answer in the same round trip.
 */
export const FIRST_WAIT_HOLD_MS = 50;

/**
 * How long a reference received before its task was accepted may still find it missing: as
 * long as the call's sender may keep resubmitting it to a full pool (backpressure, 60 s),
 * and a little more. A call refused for good answers its waits at once instead.
 */
export const FRESH_GRACE_MS = 75_000;

/** Acceptance of a task nobody here can observe (a fresh reference from elsewhere). */
export const UNKNOWN_ACCEPTANCE: Promise<unknown> = new Promise(() => {});
const noop = () => {};

/**
 * Extra time a wait may take beyond its server-side hold before the server is suspected of
 * hanging (the answer may sit behind other traffic on a busy server).
 */
const WAIT_GRACE_MS = 5000;
/** How long a suspected server has to answer a liveness probe before it counts as dead. */
const LIVENESS_PROBE_MS = 30_000;

/**
 * Tells servers about results their owner dropped unread, so fire-and-forget calls do not
 * hold pool space until they expire.
 */
const dropped = new FinalizationRegistry<{ conn: ServerConnection; task: string; accepted: Promise<unknown> }>((h) => {
  h.accepted.then(() => h.conn.send({ t: "release", task: h.task }), noop).catch(noop);
});
/** The future of a remote call. */
export class AsyncResult<T = unknown> implements PromiseLike<T> {
  #task: TaskSource | undefined;
  #accepted = false;
  #final: Promise<T> | undefined;
  #settled: Settled<T> | undefined;
  /** A reference to the task was handed on: other readers need the result too. */
  #shared = false;
  /** Registered with `dropped` (an owned task nobody has read yet). */
  #watched = false;

  /**
   * Wrap a promise (or value) as an AsyncResult. Remote calls build theirs internally.
   */
  constructor(source: PromiseLike<T> | T) {
    if ((source as unknown) === FROM_TASK && nextTask) {
      const src = (this.#task = nextTask);
      nextTask = undefined;
      this.#accepted = src.acceptedNow === true;
      if (!src.reportsAcceptance) src.accepted.then((res) => this.accept(res), noop);
    } else {
      this.#track(Promise.resolve(source as T | PromiseLike<T>));
    }
  }

  /**
   * The call was accepted with answer `res` (`task`, or its `value` when it came inline). Run
   * by the result itself when `accepted` resolves, or, for the caller's own calls
   * (`reportsAcceptance`), by the caller as the answer arrives — one promise reaction less
   * per call. Internal.
   */
  accept(res: unknown): void {
    this.#accepted = true;
    const src = this.#task!;
    // The value came with the call's answer: settled here, nothing to wait for or release.
    if (src.inline && (res as Response | undefined)?.t === "value" && !this.#settled) {
      try {
        this.#settled = { ok: true, value: src.decode((res as ValueResponse).value) as T };
      } catch (error) {
        this.#settled = { ok: false, error };
      }
    }
    // Watched only if nobody started reading it by the time the call is accepted: a result
    // awaited at once never pays for the registry (register + unregister cost tens of µs).
    if (!src.owned || this.#final || this.#shared || this.#settled) return;
    this.#watched = true;
    dropped.register(this, { conn: src.conn, task: src.task, accepted: src.accepted }, this);
  }

  /** An AsyncResult whose value is fetched from a server task. Internal. */
  static fromTask<T>(src: TaskSource): AsyncResult<T> {
    nextTask = src;
    return new AsyncResult<T>(FROM_TASK as unknown as T);
  }

  /** `(server, task)` of a task-backed result, for references. Internal. */
  get taskSource(): TaskSource | undefined {
    return this.#task;
  }

  /** Has the server accepted the call (so a reference to its task can be handed on)? Internal. */
  get isAccepted(): boolean {
    return this.#accepted;
  }

  /**
   * A reference to this task is being handed to another server: it is a reader too, so the
   * result must outlive our own read and is never released on our behalf. Internal.
   */
  markShared(): void {
    this.#shared = true;
    if (this.#task) this.#task.shared = true;
    this.#unwatch();
  }

  #unwatch(): void {
    if (!this.#watched) return;
    this.#watched = false;
    dropped.unregister(this);
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
    const s = this.#settled;
    if (s) return (this.#final = s.ok ? Promise.resolve(s.value) : Promise.reject(s.error));
    const src = this.#task!;
    if (timeoutMs !== undefined) return this.#fetch(src, timeoutMs);
    if (this.#readsAtAcceptance(src)) {
      // The common case: read at once, the value usually comes with the call's answer (and
      // `accept` has cached it then, so no caching reaction is added here).
      return (this.#final = src.accepted.then(() => this.#afterAcceptance()));
    }
    if (src.deadlineAt !== undefined || src.signal) return this.#track(this.#bounded(src));
    return this.#track(this.#fetch(src, undefined));
  }

  /** Read as the call is accepted: an inline call not accepted yet, without deadline or signal. */
  #readsAtAcceptance(src: TaskSource): boolean {
    return !!src.inline && !this.#accepted && src.deadlineAt === undefined && !src.signal;
  }

  /** Once accepted: the value that came with the answer (thrown if an error), else a fetch. */
  #afterAcceptance(): T | Promise<T> {
    const st = this.#settled;
    if (!st) return this.#track(this.#fetch(this.#task!, undefined));
    if (st.ok) return st.value;
    throw st.error;
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
    // Sent once the call is settled either way: a call aborted here may still have reached its
    // server and become a task there (its answer was just never read).
    const send = () => {
      src.conn.send({ t: "cancel", task: src.task }).catch(noop);
      // Its owner will not read it now: free the result (unless a reference to it went out).
      if (src.owned && !this.#shared) src.conn.send({ t: "release", task: src.task }).catch(noop);
    };
    src.accepted.then(send, send);
    return new CancelledError(`call cancelled (task ${src.task})`, src.conn.where);
  }

  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    const src = this.#task;
    // Awaited at once (the common `await x.method()`, off a server): one reaction on the call's
    // acceptance, where a cached read plus the reader's own took two.
    if (src && !this.#final && !this.#settled && this.#readsAtAcceptance(src) && callContext.getStore() === undefined) {
      return src.accepted.then((): R1 | R2 | PromiseLike<R1 | R2> => {
        let v: T | Promise<T>;
        try {
          v = this.#afterAcceptance();
        } catch (e) {
          if (onrejected) return onrejected(e);
          throw e;
        }
        // A fetch, or a value that is itself a future: settled first, as a promise would.
        if (typeof (v as { then?: unknown } | null)?.then === "function") return Promise.resolve(v).then(onfulfilled, onrejected);
        return onfulfilled ? onfulfilled(v as T) : (v as unknown as R1);
      }, onrejected);
    }
    const p = this.result();
    // Awaited inside an async method on a server: the method gives its capacity slot up
    // while it waits, so chains of agents awaiting each other never fill every slot.
    const suspend = this.#settled ? undefined : callContext.getStore()?.suspend;
    if (!suspend) return p.then(onfulfilled, onrejected);
    const resume = suspend();
    return p.finally(resume).then(onfulfilled, onrejected);
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
    try {
      const v = await this.#fetchLoop(src, totalMs);
      this.#unwatch();
      return v;
    } catch (e) {
      // Failed for good: nothing left to release. A bounded read that ran out may be retried.
      if (!(e instanceof DeadlineExceededError)) this.#unwatch();
      throw e;
    }
  }

  async #fetchLoop(src: TaskSource, totalMs: number | undefined): Promise<T> {
    const deadline = totalMs === undefined ? undefined : performance.now() + totalMs;
    // The first wait goes out at once, even before the call is answered: the server holds a
    // fresh wait for a task it has not seen yet. A refused call still fails this fetch at once.
    const refused = src.accepted.then(() => new Promise<never>(() => {}));
    refused.catch(noop);
    let refusal: unknown = noop;
    src.accepted.catch((e: unknown) => {
      refusal = e;
    });
    let shortDone = false;
    if (src.inline && !this.#accepted) {
      // The call's answer may be the value itself; only a task answer needs waits.
      await (deadline === undefined ? src.accepted : Promise.race([src.accepted, Bun.sleep(deadline - performance.now())]));
      const s = this.#settled;
      if (s) {
        if (s.ok) return s.value;
        throw s.error;
      }
      shortDone = this.#accepted;
    }
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
        if (left <= 0) throw new DeadlineExceededError(`result of task ${src.task} not ready within ${Math.round(totalMs!)} ms`, src.conn.where);
        waitMs = Math.min(waitMs, Math.ceil(left));
      }
      // The first wait, right behind a call still on its way, is held briefly: it can share the
      // call's batch, so a fast task answers in the same round trip, without holding a stream.
      const first = !shortDone && !this.#accepted;
      shortDone = true;
      if (first) waitMs = Math.min(waitMs, FIRST_WAIT_HOLD_MS);
      const req: WaitRequest = { t: "wait", task: src.task, timeoutMs: waitMs };
      if (!this.#accepted && performance.now() < (src.freshUntil ?? 0)) req.fresh = true;
      if (this.#shared) req.keep = true;
      // The transport deadline only catches a hung server: longer than the server-side wait,
      // but never past the caller's own deadline.
      const hungMs = deadline === undefined ? waitMs + WAIT_GRACE_MS : waitMs + 50;
      const sent = src.conn.send(req, { timeoutMs: hungMs });
      let res;
      try {
        res = this.#accepted ? await sent : await Promise.race([sent, refused]);
      } catch (e) {
        if (e === refusal || !(e instanceof AgentServerError) || e.code !== "DEADLINE_EXCEEDED") throw e;
        if (deadline !== undefined && performance.now() >= deadline) throw e;
        // The brief first hold ran out on its way: wait the usual way (with the full guard).
        if (first) {
          attempt--;
          continue;
        }
        // No answer at all within the hold plus grace: busy, or hung? Busy is not dead: ask —
        // within the caller's deadline, if it has one.
        const probeMs = deadline === undefined ? LIVENESS_PROBE_MS : Math.max(1, Math.min(LIVENESS_PROBE_MS, deadline - performance.now()));
        if (!(await src.conn.alive(probeMs).catch(() => false))) {
          if (deadline !== undefined && performance.now() >= deadline - 1) {
            throw new DeadlineExceededError(`result of task ${src.task} not ready within ${Math.round(totalMs!)} ms`, src.conn.where);
          }
          throw new AgentServerNotAliveError(
            `agent server ${src.conn.where.host}${src.conn.where.port === undefined ? "" : `:${src.conn.where.port}`} answered neither a wait for task ${src.task} within ${hungMs} ms nor a liveness probe within ${LIVENESS_PROBE_MS} ms`,
            src.conn.where,
          );
        }
        attempt--;
        continue;
      }
      if (res.t === "value") return src.decode(res.value) as T;
      if (res.t === "error") throw errorFromWire(res.error, src.conn.where);
      if (res.t !== "pending") throw new CodecError(`unexpected answer ${res.t} to a wait`, { ...src.conn.where, code: "INTERNAL" });
      // That brief first hold is not one of the waits a retry strategy counts.
      if (first) attempt--;
    }
  }
}
