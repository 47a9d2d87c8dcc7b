/**
 * How an async call runs as a task: under the server's capacity, its outcome into the result
 * pool, and its answer — the task id, or the value itself when the call asked for a hold and
 * the task finished within it (`inline-result.ts`).
 *
 * Most calls of a busy server find a slot free and nobody queued (a task that returns at once
 * frees its slot at once). Those run on the spot, and a method that returns a value rather
 * than a promise is answered in the same turn with no promise, timer or queue entry on the
 * way: under a million-agent load these hops were most of what an async call cost beyond a
 * sync one. Everything else goes through `Capacity.run` as before.
 */
import { callContext, type CallContext } from "../core/call-context.ts";
import type { WireError } from "../core/errors.ts";
import type { Response } from "../core/protocol.ts";
import type { Capacity, Slot } from "./capacity.ts";
import { answerWithin } from "./inline-result.ts";
import { LazyAbort } from "./lazy-abort.ts";
import { ThrownByMethod } from "./method-errors.ts";
import type { TaskInfo } from "./observer.ts";
import type { Outcome, ResultPool } from "./pool/types.ts";
import { bindTraced } from "./tracing.ts";

/** What running a task needs from its servicer. */
export interface TaskHost {
  readonly capacity: Capacity;
  readonly pool: ResultPool;
  /** Running tasks, for `cancel`. */
  readonly running: Map<string, LazyAbort>;
  /**
   * Reserve a solo task in the pool after all (`started`: it already runs, so it is not refused
   * for room; a taken id still throws ALREADY_EXISTS). Only for pools that answer inline (local).
   */
  prepare(task: string, started: boolean): void;
  /** Record the outcome (pool unless `record` is false; observers, traces) and return it. */
  finish(task: string, outcome: () => Outcome, call: TaskInfo, record?: boolean): Outcome;
  /** Encode a task's result; `call` names the method in the error when it cannot travel. */
  encodeResult(v: unknown, call: TaskInfo): Uint8Array;
  userError(e: unknown): WireError;
  wireError(e: unknown): WireError;
}

/** One async call, prepared in the pool as `id`. */
export interface TaskCall {
  id: string;
  obj: object;
  fn: (...a: unknown[]) => unknown;
  args: unknown[];
  cls: string;
  oid: string;
  method: string;
  deadlineAt: number | undefined;
  gone: AbortSignal | undefined;
  holdMs: number | undefined;
  /**
   * Not in the pool yet, and nobody else can name it (`CallRequest.solo`): a value answered in
   * the same turn never enters the pool; any other outcome is reserved there first.
   */
  solo: boolean;
}

/**
 * The `currentCall()` of a task. A class (its getters on the prototype) rather than an object
 * literal per call: a literal with a getter cost more than the rest of a fast task's context.
 */
class TaskContext implements CallContext {
  readonly task: string;
  readonly #ctl: LazyAbort;
  readonly #slot: Slot;
  readonly #t: TaskCall;

  constructor(t: TaskCall, ctl: LazyAbort, slot: Slot) {
    this.task = t.id;
    this.#t = t;
    this.#ctl = ctl;
    this.#slot = slot;
  }

  get signal(): AbortSignal {
    return this.#ctl.signal;
  }

  /** Read detached (`const s = currentCall()?.suspend; s()`), so it comes bound. */
  get suspend(): () => () => Promise<void> {
    return () => this.#slot.suspend();
  }

  get agent(): { cls: string; oid: string; method: string } {
    return { cls: this.#t.cls, oid: this.#t.oid, method: this.#t.method };
  }
}

/** Run task `t` and answer its call (task id, or the value within its hold). */
export function runTask(host: TaskHost, t: TaskCall): Response | Promise<Response> {
  const id = t.id;
  const ctl = new LazyAbort();
  const call: TaskInfo = { cls: t.cls, method: t.method, since: performance.now() };
  // A solo task is recorded only if it is answered with its id (`keep`).
  const record = !t.solo;
  const keep = t.solo ? keeper(host, id) : undefined;
  const ok = (v: unknown) => host.finish(id, () => valueOutcome(host, v, call), call, record);
  const failed = (e: unknown) => host.finish(id, () => errorOutcome(host, e), call, record);
  const slot = host.capacity.tryTake();
  if (slot) {
    let r: unknown;
    try {
      r = callContext.run(new TaskContext(t, ctl, slot), () => t.fn.apply(t.obj, t.args));
    } catch (e) {
      host.capacity.release(slot);
      return answerNow(host, t, failed(new ThrownByMethod(e)), keep);
    }
    if (!isThenable(r)) {
      host.capacity.release(slot);
      return answerNow(host, t, ok(r), keep);
    }
    const startedAt = performance.now();
    host.running.set(id, ctl);
    const outcome = Promise.resolve(r).then(
      (v) => (host.capacity.release(slot), ok(v)),
      (e) => (host.capacity.release(slot), failed(new ThrownByMethod(e))),
    );
    return t.holdMs ? answerWithin(id, outcome, t.holdMs, host.pool, () => startedAt, keep) : { t: "task", task: id };
  }
  host.running.set(id, ctl);
  let startedAt: number | undefined;
  const outcome = host.capacity
    .run(
      bindTraced((s: Slot) => {
        startedAt = performance.now();
        return callContext.run(new TaskContext(t, ctl, s), async () => {
          try {
            return await t.fn.apply(t.obj, t.args);
          } catch (e) {
            throw new ThrownByMethod(e);
          }
        });
      }),
      t.deadlineAt,
      t.gone,
    )
    .then(ok, failed);
  return t.holdMs ? answerWithin(id, outcome, t.holdMs, host.pool, () => startedAt, keep) : { t: "task", task: id };
}

/**
 * The answer of a task that finished in the turn it started: its value if it succeeded and the
 * call asked for a hold (read at once, or for a solo task never recorded), else its task id (a
 * solo task is then kept).
 */
function answerNow(host: TaskHost, t: TaskCall, o: Outcome, keep: ((o: Outcome) => void) | undefined): Response {
  if (keep) {
    if (o.ok) return { t: "value", value: o.value };
    keep(o);
    return { t: "task", task: t.id };
  }
  return t.holdMs && o.ok && host.pool.readNow?.(t.id) ? { t: "value", value: o.value } : { t: "task", task: t.id };
}

/**
 * What keeps a solo task answered with its id: reserved in the pool now — not refused for room,
 * it runs or ran; a taken id throws ALREADY_EXISTS, and nothing of it is recorded — and its
 * outcome recorded there, at once or when it lands.
 */
function keeper(host: TaskHost, id: string): (o: Outcome | Promise<Outcome>) => void {
  return (o) => {
    host.prepare(id, true);
    if (o instanceof Promise) o.then((x) => host.pool.set(id, x));
    else host.pool.set(id, o);
  };
}

function valueOutcome(host: TaskHost, v: unknown, call: TaskInfo): Outcome {
  return { ok: true, value: host.encodeResult(v, call) };
}

function errorOutcome(host: TaskHost, e: unknown): Outcome {
  return { ok: false, error: e instanceof ThrownByMethod ? host.userError(e.error) : host.wireError(e) };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  if (v instanceof Promise) return true;
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof (v as { then?: unknown }).then === "function";
}
