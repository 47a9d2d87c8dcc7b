/**
 * The proxy a caller holds for a remote object (AgentScope's RpcObject): every public method
 * returns an AsyncResult, every other public name is a remote attribute read, and a small
 * handle (`oid`, `host`, `port`, `delete`, `stop`, `await using`) manages the object.
 */
import { AsyncResult, FIRST_WAIT_HOLD_MS, FRESH_GRACE_MS, UNKNOWN_ACCEPTANCE, type TaskSource } from "./async-result.ts";
import type { ServerConnection } from "./connection.ts";
import { AgentServerError, CodecError, DeadlineExceededError, NotFoundError, ResourceExhaustedError, errorFromWire } from "../core/errors.ts";
import { SOLO, type CallRequest, type ErrorResponse, type Response } from "../core/protocol.ts";
import { randomId } from "../core/ids.ts";
import { encodeArgs, encodeArgsFrame, encodeArgsWhenReady, NeedsAwait, NeedsListener, type Destination } from "./ref-encode.ts";
import { REMOTE, remoteState, type CallOptions, type Remote, type RemoteState } from "./proxy-state.ts";
import { runtime, type LocalHooks } from "./runtime.ts";
import { connectionFor } from "./connections.ts";
import { DEFAULT_RETRY } from "./retry.ts";
import { DEFAULTS } from "../core/defaults.ts";
import { type RefCodec, type WireRefTag } from "../core/codec.ts";
import { decodeValue } from "../core/codec-decode.ts";
import { isId, isObjectId } from "../core/ids.ts";
import type { Address } from "../core/transport.ts";
import { isReachableName } from "../core/registry.ts";
import type { RequestOptions } from "../core/transport.ts";
import { RemoteStream } from "./remote-stream.ts";
import { decodeCallback } from "./callback-stubs.ts";
import type { Frame } from "../core/split-frame.ts";

/** Longest a call without a deadline keeps resubmitting to a full pool before giving up. */
export const BACKPRESSURE_MAX_MS = 60_000;
/** Longest single pause between resubmissions. */
const BACKPRESSURE_MAX_PAUSE_MS = 500;
const noop = (): void => {};

/**
 * The management methods of every proxy. One set for all proxies (a million proxies made
 * per-proxy closures a large part of the client's heap, and of every full collection's work):
 * read through a proxy they come bound to it, so they also work detached (`const { stop } = p`).
 */
const MANAGEMENT: Record<string, (st: RemoteState, proxy: unknown) => unknown> = {
  delete: (st) => deleteRemote(st),
  stop: (st) => (st.owner ? st.owner.stop() : Promise.resolve()),
  toDist: (_st, proxy) => proxy,
};

/** Disposal is best effort: a server that is already gone has nothing left to release. */
function dispose(st: RemoteState): Promise<void> {
  return st.owner ? st.owner.stop() : st.created ? deleteRemote(st).catch(ignoreGone) : Promise.resolve();
}

/** The target of every proxy inherits this: `await using` finds its disposer here. */
const TARGET_PROTO = {
  [Symbol.asyncDispose](this: unknown): Promise<void> {
    const st = remoteState(this);
    return st ? dispose(st) : Promise.resolve();
  },
};

/** What a proxy's target holds: its state, and its oid as a plain property. */
type Target = { [REMOTE]: RemoteState; oid: string };

/** The one handler of all proxies (their state is on the target). */
const HANDLER: ProxyHandler<Target> = {
  get(target, name, receiver) {
    const st = target[REMOTE];
    if (typeof name === "symbol") return (target as unknown as Record<symbol, unknown>)[name];
    if (name === "oid") return st.oid;
    if (name === "host") return st.host;
    if (name === "port") return st.port;
    const m = Object.hasOwn(MANAGEMENT, name) ? MANAGEMENT[name] : undefined;
    if (m) return () => m(st, receiver);
    if (!isReachableName(name)) return undefined;
    const info = st.info;
    if (info && !info.methodSet?.has(name) && !info.methods.includes(name)) return invoke(st, name, [], "read", st.callOpts);
    // Made per read (not cached per proxy): a proxy costs no memory for the methods it was called by.
    if (!info) return hybrid(st, name);
    if (info.streams?.includes(name)) return (...args: unknown[]) => openStream(st, name, args, st.callOpts);
    return (...args: unknown[]) => invoke(st, name, args, "call", st.callOpts);
  },
  has(target, name) {
    if (typeof name === "symbol") return name in target;
    return name === "oid" || Object.hasOwn(MANAGEMENT, name) || !!target[REMOTE].info?.methods.includes(name);
  },
  set() {
    throw new TypeError("remote objects cannot be assigned to; call a method instead");
  },
};

/** Build the proxy for a remote object. */
export function makeRemote<T>(st: RemoteState): Remote<T> {
  if (!st.isReady) st.ready.then(() => void (st.isReady = true), noop);
  const target = Object.create(TARGET_PROTO) as Target;
  target[REMOTE] = st;
  target.oid = st.oid;
  return new Proxy(target, HANDLER) as unknown as Remote<T>;
}

/** For proxies whose class is not known yet: callable (a method) and awaitable (an attribute). */
function hybrid(st: RemoteState, name: string): unknown {
  let read: AsyncResult | undefined;
  const r = () => (read ??= invoke(st, name, [], "read", st.callOpts));
  const fn = (...args: unknown[]) => {
    if (st.info?.streams?.includes(name)) return openStream(st, name, args, st.callOpts);
    const call = invoke(st, name, args, "call", st.callOpts);
    if (st.info) return call;
    // Class not known yet (connect()): a stream method's call resolves to its RemoteStream,
    // and iterating the call itself reads that stream.
    return Object.assign(call, {
      async *[Symbol.asyncIterator]() {
        yield* (await call) as AsyncIterable<unknown>;
      },
    });
  };
  return Object.assign(fn, {
    then: (a?: (v: unknown) => unknown, b?: (e: unknown) => unknown) => r().then(a, b),
    catch: (b?: (e: unknown) => unknown) => r().catch(b),
    finally: (f?: () => void) => r().finally(f),
    result: (ms?: number) => r().result(ms),
  });
}

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
  if (kind === "call" && st.info?.streams?.includes(name)) return new AsyncResult(Promise.resolve(openStream(st, name, args, opts)));
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
  let now: Frame | undefined;
  let later: Promise<Uint8Array> | undefined;
  try {
    // A sync call sends its arguments once: large binary leaves go from the caller's arrays
    // straight into the message. An async one may be submitted again later: a frame of its own.
    now = task ? encodeArgs(args, dest, st.conn.transport) : encodeArgsFrame(args, dest, st.conn.transport);
  } catch (e) {
    if (!(e instanceof NeedsAwait || e instanceof NeedsListener)) {
      return rejected(e instanceof AgentServerError ? e : new CodecError(`cannot send arguments of ${name}: ${(e as Error).message}`));
    }
    // An argument is not ready to be sent (a pending sync result, a task or object its server
    // has not accepted yet, a child that needs a listener): send once it is.
    later = encodeArgsWhenReady(args, dest, st.conn.transport);
  }
  const deadlineAt = opts?.timeoutMs === undefined ? undefined : performance.now() + opts.timeoutMs;
  // The task's source exists before the call is sent: the request carries it as its sharing
  // state (`SOLO`), read when the request is serialized. (`accepted` is set below.)
  const src: TaskSource | undefined = task
    ? { conn: st.conn, task, accepted: UNKNOWN_ACCEPTANCE, decode: decodeFrom, maxWaitMs: st.maxWaitMs, retry: st.retry, freshUntil: Infinity, owned: true, inline: opts?.inline !== false, reportsAcceptance: true }
    : undefined;
  const call = new OutgoingCall(st, name, opts, deadlineAt, src);
  // Calls made while the object is still being created queue behind it, in call order.
  const sent = now
    ? st.isReady
      ? call.send(now)
      : st.ready.then(() => call.send(now))
    : Promise.all([later!, st.ready]).then(([p]) => call.send(p));
  if (!src) return new AsyncResult(sent.then((res) => call.value(res)));
  // Synchronous on the usual answer (no extra promise hop per call); a refusal may resubmit.
  // The result learns of its acceptance there, before `accepted` resolves.
  const accepted = (call.accepted = sent.then(
    (res) => call.answer(res),
    (e) => call.failed(e),
  ));
  src.accepted = accepted;
  if (deadlineAt !== undefined) src.deadlineAt = deadlineAt;
  if (opts?.signal) src.signal = opts.signal;
  return (call.result = AsyncResult.fromTask(src));
}

/**
 * One call on its way: what sending it (again) needs, and what its answer does. An object
 * rather than closures: a call made four closures and their context before, per call.
 */
class OutgoingCall {
  /** The frame sent last (resubmitted after a refusal). */
  payload: Frame | undefined;
  readonly started = performance.now();
  refusals = 0;
  result: AsyncResult | undefined;
  accepted: Promise<unknown> | undefined;

  constructor(
    readonly st: RemoteState,
    readonly name: string,
    readonly opts: CallOptions | undefined,
    readonly deadlineAt: number | undefined,
    readonly src: TaskSource | undefined,
  ) {}

  send(payload: Frame): Promise<Response> {
    this.payload = payload;
    const { st, src, deadlineAt, opts } = this;
    const req: CallRequest = { t: "call", oid: st.oid, name: this.name, args: payload };
    if (src) {
      req.task = src.task;
      // A fast task answers its value right away: one round trip, no wait (within the deadline).
      const hold = !src.inline ? 0 : deadlineAt === undefined ? FIRST_WAIT_HOLD_MS : Math.min(FIRST_WAIT_HOLD_MS, Math.floor((deadlineAt - performance.now()) / 2));
      if (hold > 0) {
        req.holdMs = hold;
        req[SOLO] = src;
      }
    }
    let reqOpts: RequestOptions | undefined;
    if (opts?.signal) reqOpts = { signal: opts.signal };
    if (deadlineAt !== undefined) {
      const left = Math.max(1, Math.round(deadlineAt - performance.now()));
      req.timeoutMs = left;
      (reqOpts ??= {}).timeoutMs = left;
    }
    // The raw answer (no `expect` layer): one promise hop less on every call.
    return st.conn.send(req, reqOpts);
  }

  /** A sync call's answer: its value, or its error. */
  value(res: Response): unknown {
    if (res.t === "value") return decodeFrom(res.value);
    if (res.t === "error") throw errorFromWire(res.error, this.st.conn.where);
    throw new CodecError(`expected a value from ${this.name}, got ${res.t}`);
  }

  /** An async call's answer: accepted (told to the result), or refused (perhaps resubmitted). */
  answer(res: Response): unknown {
    if (res.t !== "error") return (this.result!.accept(res), res);
    return this.refused(res).then(
      (again) => (this.result!.accept(again), again),
      (e) => this.failed(e),
    );
  }

  failed(e: unknown): never {
    // A call nobody reads (fire and forget) fails quietly, as any unread result: no unhandled
    // rejection. The handler goes on only now, so a call that succeeds pays nothing for it.
    this.accepted!.catch(noop);
    throw e;
  }

  async refused(res: ErrorResponse): Promise<Response> {
    const e = errorFromWire(res.error, this.st.conn.where);
    const opts = this.opts;
    if (opts?.backpressure === false || !(e instanceof ResourceExhaustedError) || e.retryAfterMs === undefined) throw e;
    // A full pool of unread results: wait for readers to make room, then submit again.
    const giveUpAt = this.deadlineAt ?? this.started + BACKPRESSURE_MAX_MS;
    this.refusals++;
    const pause = Math.min(BACKPRESSURE_MAX_PAUSE_MS, e.retryAfterMs * 2 ** Math.min(this.refusals - 1, 8)) * (0.5 + Math.random());
    if (performance.now() + pause >= giveUpAt || opts?.signal?.aborted) throw e;
    await Bun.sleep(pause);
    const again = await this.send(this.payload!);
    return again.t === "error" ? this.refused(again) : again;
  }
}

/**
 * Call a stream method: the RemoteStream exists at once, under a stream id chosen here (like a
 * task id), and starts pulling once the server accepted the call.
 */
export function openStream(st: RemoteState, name: string, args: unknown[], opts?: CallOptions): RemoteStream {
  const conn = st.conn;
  const id = randomId();
  const dest: Destination = conn.address.child ? "ipc" : "net";
  const accepted = (async () => {
    if (st.deleted) throw new NotFoundError(`object ${st.oid} was deleted`, { host: st.host, port: st.port });
    let payload: Uint8Array;
    try {
      payload = encodeArgs(args, dest, conn.transport);
    } catch (e) {
      if (!(e instanceof NeedsAwait || e instanceof NeedsListener)) throw e instanceof AgentServerError ? e : new CodecError(`cannot send arguments of ${name}: ${(e as Error).message}`);
      payload = await encodeArgsWhenReady(args, dest, conn.transport);
    }
    if (!st.isReady) await st.ready;
    const req: CallRequest = { t: "call", oid: st.oid, name, args: payload, task: id };
    if (opts?.timeoutMs !== undefined) req.timeoutMs = opts.timeoutMs;
    const res = await conn.send(req, opts?.signal ? { signal: opts.signal } : undefined);
    if (res.t === "error") throw errorFromWire(res.error, conn.where);
    if (res.t !== "task") throw new CodecError(`expected a stream from ${name}, got ${res.t}`, { ...conn.where, code: "INTERNAL" });
  })();
  return new RemoteStream({ conn, id, accepted, decode: decodeFrom, maxWaitMs: st.maxWaitMs, timeoutMs: opts?.timeoutMs, signal: opts?.signal, owned: true });
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

export function decodeRef(tag: WireRefTag, self?: LocalHooks): unknown {
    if (tag.$as === "cb") return decodeCallback(tag, decodeFrom);
    const at = parseAddress(tag.at);
    if (tag.$as === "stream") {
      if (!isId(tag.id)) throw new CodecError("bad stream reference");
      const local = self?.isSelf(at) ? self.stream?.(tag.id) : undefined;
      if (local) return local;
      const conn = connectionFor(at, { fromValue: true });
      return new RemoteStream({ conn, id: tag.id, accepted: Promise.resolve(), acceptedNow: true, decode: decodeFrom, maxWaitMs: DEFAULTS.maxTimeoutSeconds * 1000, owned: true });
    }
    if (tag.$as === "fut") {
      if (!isId(tag.task)) throw new CodecError("bad task reference");
      if (self?.isSelf(at)) return self.task(tag.task);
      const conn = connectionFor(at, { fromValue: true });
      const fresh = tag.fresh === true;
      return AsyncResult.fromTask({
        conn,
        task: tag.task,
        accepted: fresh ? UNKNOWN_ACCEPTANCE : Promise.resolve(),
        acceptedNow: !fresh,
        freshUntil: fresh ? performance.now() + FRESH_GRACE_MS : 0,
        decode: decodeFrom,
        maxWaitMs: DEFAULTS.maxTimeoutSeconds * 1000,
        retry: DEFAULT_RETRY,
      });
    }
    if (!isObjectId(tag.oid)) throw new CodecError("bad object reference");
    if (self?.isSelf(at)) {
      const local = self.object(tag.oid);
      if (local) return local;
    }
    const methods = stringList(tag.m);
    const asyncs = stringList(tag.a);
    const conn = connectionFor(at, { fromValue: true });
    const info =
      methods && typeof tag.cls === "string"
        ? { cls: tag.cls, methods, async: asyncs ?? [], methodSet: new Set(methods), asyncSet: new Set(asyncs ?? []) }
        : undefined;
    return makeRemote({
      oid: tag.oid,
      conn,
      ready: Promise.resolve(),
      isReady: true,
      info,
      retry: DEFAULT_RETRY,
      maxWaitMs: DEFAULTS.maxTimeoutSeconds * 1000,
      host: conn.where.host,
      port: conn.where.port,
    });
  }

/** The codec for values this process receives (encoding is never asked of it). */
const receiving: RefCodec = {
  encode: () => {
    throw new CodecError("this codec only decodes");
  },
  decode: (tag) => decodeRef(tag),
};

/** Decode a value a server sent this process: references become proxies and AsyncResults. */
export function decodeFrom(bytes: Frame): unknown {
  return decodeValue(bytes, receiving, runtime.limits);
}

function stringList(v: unknown): string[] | undefined {
  if (!Array.isArray(v) || v.length > 10_000 || !v.every((x) => typeof x === "string")) return undefined;
  return v as string[];
}

function parseAddress(v: unknown): Address {
  if (v === null || typeof v !== "object") throw new CodecError("bad reference address");
  const a = v as Record<string, unknown>;
  if (typeof a.host !== "string") throw new CodecError("bad reference address");
  const out: Address = { host: a.host };
  if (a.port !== undefined) {
    if (typeof a.port !== "number" || !Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new CodecError("bad reference port");
    out.port = a.port;
  }
  if (a.child !== undefined) {
    if (typeof a.child !== "string" || a.child.length > 64) throw new CodecError("bad reference child id");
    out.child = a.child;
  }
  if (a.key !== undefined) {
    if (typeof a.key !== "string" || a.key.length > 128) throw new CodecError("bad reference key");
    out.key = a.key;
  }
  return out;
}

