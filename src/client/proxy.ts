/**
 * The proxy a caller holds for a remote object (AgentScope's RpcObject): every public method
 * returns an AsyncResult, every other public name is a remote attribute read, and a small
 * handle (`oid`, `host`, `port`, `delete`, `stop`, `await using`) manages the object.
 */
import { AsyncResult, type TaskSource } from "./async-result.ts";
import type { ServerConnection } from "./connection.ts";
import { AgentServerError, CodecError, DeadlineExceededError, NotFoundError, ResourceExhaustedError, errorFromWire } from "../core/errors.ts";
import type { CallRequest, ClassInfo } from "../core/protocol.ts";
import { randomId } from "../core/ids.ts";
import { decodeFrom, encodeArgs, encodeArgsWhenReady, NeedsAwait, NeedsListener, type Destination } from "./refs.ts";
import { isReachableName } from "../core/registry.ts";
import type { RetryStrategy } from "./retry.ts";
import type { Distributable } from "./distributable.ts";
import type { RequestOptions } from "../core/transport.ts";

/** Each argument may also be the pending result of another call, a promise, or a proxy in place of an object. */
export type Pipelined<A extends readonly unknown[]> = { [I in keyof A]: Sendable<A[I]> };

/** What may be passed where a `V` is expected. */
export type Sendable<V> = V | Arrived<V> | AsyncResult<V> | AsyncResult<Arrived<V>> | PromiseLike<V>;

/** Members every proxy has, whatever the remote class. */
export interface RemoteHandle {
  /** The object's id on its server (the same as the local object's). */
  readonly oid: string;
  /** The server's host (`"child:<id>"` for a child server). */
  readonly host: string;
  /** The server's port; `undefined` for a child server. */
  readonly port: number | undefined;
  /** Remove the object from its server. Calls made afterwards fail with NOT_FOUND. */
  delete(): Promise<void>;
  /** Stop the child server this proxy started (no-op for other proxies). */
  stop(): Promise<void>;
  /** Release what this proxy created: its child server, or its object on an independent server. */
  [Symbol.asyncDispose](): Promise<void>;
}

type RemoteKey<T, K> = K extends string
  ? K extends `_${string}` | "oid" | "toDist" | keyof RemoteHandle
    ? never
    : T[K & keyof T] extends never ? never : K
  : never;

/** A value as it arrives from a server: server-held objects (Distributables) come as proxies. */
export type Arrived<V> = V extends Distributable ? Remote<V> : V extends Array<infer E> ? Array<Arrived<E>> : V;

/** The remote view of `T`: methods return AsyncResults, fields read as AsyncResults. */
export type Remote<T> = {
  readonly [K in keyof T as RemoteKey<T, K>]: T[K] extends (...args: infer A) => infer R
    ? (...args: Pipelined<A>) => AsyncResult<Arrived<Awaited<R>>>
    : AsyncResult<Arrived<Awaited<T[K]>>>;
} & RemoteHandle;

/** Internal state behind a proxy. */
export interface RemoteState {
  oid: string;
  /** The server holding the object (known at once, even while a child is still starting). */
  conn: ServerConnection;
  /** Resolves once the object exists on its server; rejects with why it could not be made. */
  ready: Promise<void>;
  /** Set once `ready` resolved: lets calls skip a microtask. */
  isReady?: boolean;
  info?: ClassInfo & { asyncSet?: ReadonlySet<string>; methodSet?: ReadonlySet<string> };
  /** The child server this proxy spawned, if it did. */
  owner?: { stop(): Promise<void> };
  /** True when this proxy created its object on an independent server (dispose deletes it). */
  created?: boolean;
  deleted?: boolean;
  retry: RetryStrategy;
  maxWaitMs: number;
  host: string;
  port: number | undefined;
  /** Options every call through this proxy uses (see `withOptions`). */
  callOpts?: CallOptions;
}

/** Symbol under which a proxy exposes its state (never a remote name: symbols are local). */
export const REMOTE = Symbol.for("actorscope.remote");

/** The state of a proxy, or undefined for anything else. */
export function remoteState(v: unknown): RemoteState | undefined {
  if ((typeof v !== "object" && typeof v !== "function") || v === null) return undefined;
  return (v as Record<symbol, RemoteState | undefined>)[REMOTE];
}

/** Build the proxy for a remote object. */
export function makeRemote<T>(st: RemoteState): Remote<T> {
  st.ready.then(
    () => {
      st.isReady = true;
    },
    () => {},
  );
  const fns = new Map<string, unknown>();
  const handle: Record<string | symbol, unknown> = {
    [REMOTE]: st,
    oid: st.oid,
    delete: () => deleteRemote(st),
    stop: () => (st.owner ? st.owner.stop() : Promise.resolve()),
    // Disposal is best effort: a server that is already gone has nothing left to release.
    [Symbol.asyncDispose]: () => (st.owner ? st.owner.stop() : st.created ? deleteRemote(st).catch(ignoreGone) : Promise.resolve()),
    toDist: () => proxy,
  };
  const proxy: Remote<T> = new Proxy(handle, {
    get(target, name) {
      if (typeof name === "symbol") return target[name];
      if (name === "host") return st.host;
      if (name === "port") return st.port;
      if (Object.hasOwn(target, name)) return target[name];
      if (!isReachableName(name)) return undefined;
      const hit = fns.get(name);
      if (hit) return hit;
      const info = st.info;
      if (info && !info.methodSet?.has(name) && !info.methods.includes(name)) return invoke(st, name, [], "read", st.callOpts);
      const fn = info ? (...args: unknown[]) => invoke(st, name, args, "call", st.callOpts) : hybrid(st, name);
      fns.set(name, fn);
      return fn;
    },
    has(target, name) {
      return typeof name === "symbol" ? name in target : Object.hasOwn(target, name) || !!st.info?.methods.includes(name);
    },
    set() {
      throw new TypeError("remote objects cannot be assigned to; call a method instead");
    },
  }) as unknown as Remote<T>;
  return proxy;
}

/** For proxies whose class is not known yet: callable (a method) and awaitable (an attribute). */
function hybrid(st: RemoteState, name: string): unknown {
  let read: AsyncResult | undefined;
  const r = () => (read ??= invoke(st, name, [], "read", st.callOpts));
  const fn = (...args: unknown[]) => invoke(st, name, args, "call", st.callOpts);
  return Object.assign(fn, {
    then: (a?: (v: unknown) => unknown, b?: (e: unknown) => unknown) => r().then(a, b),
    catch: (b?: (e: unknown) => unknown) => r().catch(b),
    finally: (f?: () => void) => r().finally(f),
    result: (ms?: number) => r().result(ms),
  });
}

/** Options of calls made through a proxy (see `withOptions`). */
export interface CallOptions {
  /**
   * Deadline of each call, ms: a sync call or attribute read fails with DEADLINE_EXCEEDED if
   * it has not answered by then; an async call's result likewise, and the server drops the
   * call if it could not even start in time.
   */
  timeoutMs?: number;
  /** Cancels calls: their AsyncResults reject with CANCELLED and the server's `currentCall().signal` aborts. */
  signal?: AbortSignal;
  /**
   * When a server's result pool is full of results nobody has read yet, it refuses new async
   * calls for a moment (RESOURCE_EXHAUSTED with a retry hint). With backpressure on (the
   * default) the call is resubmitted after a short, growing pause until it is accepted, its
   * deadline passes, or `BACKPRESSURE_MAX_MS` runs out; off, the refusal is the call's error.
   */
  backpressure?: boolean;
}

/** Longest a call without a deadline keeps resubmitting to a full pool before giving up. */
export const BACKPRESSURE_MAX_MS = 60_000;
/** Longest single pause between resubmissions. */
const BACKPRESSURE_MAX_PAUSE_MS = 500;

/**
 * A view of `remote` whose calls carry `opts` (deadline, cancellation). The object is the
 * same; only calls made through the returned proxy use the options.
 *
 * @example
 * const fast = withOptions(agent, { timeoutMs: 2000, signal: controller.signal });
 * await fast.reply(msg); // DEADLINE_EXCEEDED after 2 s, CANCELLED on controller.abort()
 */
export function withOptions<T>(remote: Remote<T>, opts: CallOptions): Remote<T> {
  const st = remoteState(remote);
  if (!st) throw new TypeError("withOptions needs a remote proxy");
  if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) throw new RangeError("timeoutMs must be positive");
  const view: RemoteState = Object.create(st);
  view.callOpts = { ...st.callOpts, ...opts };
  return makeRemote<T>(view);
}

/** Make one call or attribute read; always returns an AsyncResult, never throws. */
export function invoke(st: RemoteState, name: string, args: unknown[], kind: "call" | "read", opts?: CallOptions): AsyncResult {
  if (st.deleted) return rejected(new NotFoundError(`object ${st.oid} was deleted`, { host: st.host, port: st.port }));
  // Class not known yet (connect() waits for `describe`): decide sync or async once it is.
  if (kind === "call" && !st.info && !st.isReady) {
    if (opts?.timeoutMs === undefined) return new AsyncResult(st.ready.then(() => invoke(st, name, args, kind, opts).result()));
    // The call's deadline covers finding out the class too.
    const until = performance.now() + opts.timeoutMs;
    const ms = opts.timeoutMs;
    let timer: Timer | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineExceededError(`${name}: no answer within ${ms} ms (the object's class was not known yet)`, { host: st.host, port: st.port })), ms);
    });
    return new AsyncResult(
      Promise.race([st.ready, late])
        .finally(() => clearTimeout(timer))
        .then(() => invoke(st, name, args, kind, { ...opts, timeoutMs: Math.max(1, until - performance.now()) }).result()),
    );
  }
  const dest: Destination = st.conn.address.child ? "ipc" : "net";
  const isAsync = kind === "call" && !!(st.info?.asyncSet?.has(name) ?? st.info?.async.includes(name));
  // The task id is ours, chosen now: the AsyncResult can be handed on as a reference at once.
  const task = isAsync ? randomId() : undefined;
  let now: Uint8Array | undefined;
  let later: Promise<Uint8Array> | undefined;
  try {
    now = encodeArgs(args, dest);
  } catch (e) {
    if (!(e instanceof NeedsAwait || e instanceof NeedsListener)) {
      return rejected(e instanceof AgentServerError ? e : new CodecError(`cannot send arguments of ${name}: ${(e as Error).message}`));
    }
    // An argument is not ready to be sent (a pending sync result, a task or object its server
    // has not accepted yet, a child that needs a listener): send once it is.
    later = encodeArgsWhenReady(args, dest);
  }
  const conn = st.conn;
  const deadlineAt = opts?.timeoutMs === undefined ? undefined : performance.now() + opts.timeoutMs;
  const reqOpts: RequestOptions = {};
  if (opts?.signal) reqOpts.signal = opts.signal;
  const send = (payload: Uint8Array) => {
    const req: CallRequest = { t: "call", oid: st.oid, name, args: payload };
    if (task) req.task = task;
    if (deadlineAt !== undefined) {
      const left = Math.max(1, Math.round(deadlineAt - performance.now()));
      req.timeoutMs = left;
      reqOpts.timeoutMs = left;
    }
    // The raw answer (no `expect` layer): one promise hop less on every call.
    return conn.send(req, reqOpts);
  };
  // Calls made while the object is still being created queue behind it, in call order.
  let payload = now;
  const started = performance.now();
  let refusals = 0;
  const sent = now
    ? st.isReady
      ? send(now)
      : st.ready.then(() => send(now))
    : Promise.all([later!, st.ready]).then(([p]) => send((payload = p)));
  if (!task) {
    return new AsyncResult(
      sent.then((res) => {
        if (res.t === "value") return decodeFrom(res.value, conn);
        if (res.t === "error") throw errorFromWire(res.error, conn.where);
        throw new CodecError(`expected a value from ${name}, got ${res.t}`);
      }),
    );
  }
  const backpressure = opts?.backpressure !== false;
  const accepted = sent.then(async function answer(res): Promise<unknown> {
    if (res.t !== "error") return res;
    const e = errorFromWire(res.error, conn.where);
    if (!backpressure || !(e instanceof ResourceExhaustedError) || e.retryAfterMs === undefined) throw e;
    // A full pool of unread results: wait for readers to make room, then submit again.
    const giveUpAt = deadlineAt ?? started + BACKPRESSURE_MAX_MS;
    refusals++;
    const pause = Math.min(BACKPRESSURE_MAX_PAUSE_MS, e.retryAfterMs * 2 ** Math.min(refusals - 1, 8)) * (0.5 + Math.random());
    if (performance.now() + pause >= giveUpAt || opts?.signal?.aborted) throw e;
    await Bun.sleep(pause);
    return answer(await send(payload!));
  });
  const src: TaskSource = { conn, task, accepted, decode: (b) => decodeFrom(b, conn), maxWaitMs: st.maxWaitMs, retry: st.retry, freshUntil: Infinity, owned: true };
  if (deadlineAt !== undefined) src.deadlineAt = deadlineAt;
  if (opts?.signal) src.signal = opts.signal;
  return AsyncResult.fromTask(src);
}

function ignoreGone(e: unknown): void {
  const code = (e as { code?: unknown } | null)?.code;
  if (code !== "UNAVAILABLE" && code !== "NOT_FOUND") throw e;
}

async function deleteRemote(st: RemoteState): Promise<void> {
  if (st.deleted) return;
  await st.ready;
  await st.conn.expect({ t: "delete", oid: st.oid });
  st.deleted = true;
}

function rejected(e: unknown): AsyncResult<never> {
  return new AsyncResult<never>(Promise.reject(e));
}
