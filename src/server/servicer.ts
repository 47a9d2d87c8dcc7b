/**
 * The servicer: the transport-agnostic core of an agent server. It owns the object table,
 * runs calls (sync inline, async under `capacity` into the result pool), answers management
 * requests, and turns every failure into a wire error. The IPC and gRPC bindings only move
 * `Request`/`Response` messages in and out of `handle()`.
 */
import { AsyncResult } from "../client/async-result.ts";
import { encodeFrame, encodeValue, type Frame, type RefCodec, type WireRefTag } from "../core/codec.ts";
import { decodeValue } from "../core/codec-decode.ts";
import {
  AgentServerError,
  CodecError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnimplementedError,
  errorFromWire,
  errorToWire,
  type WireError,
} from "../core/errors.ts";
import { DEFAULT_LIMITS, type Limits } from "../core/limits.ts";
import { type AgentInfo, type CallRequest, type Request, type Response, type ServerInfo } from "../core/protocol.ts";
import { isId, isObjectId, randomId } from "../core/ids.ts";
import { makeRefCodec, registerLocalServer, unregisterLocalServer } from "../client/refs.ts";
import { type LocalHooks } from "../client/runtime.ts";
import { classInfo, isReachableName, type AnyClass } from "../core/registry.ts";
import type { Address } from "../core/transport.ts";
import { withPresetOid } from "../core/oid.ts";
import { Capacity } from "./capacity.ts";
import { validateRequest } from "./validate.ts";
import { Arrivals } from "./arrivals.ts";
import { CpuMeter, describeAgents, serverInfoOf } from "./agent-info.ts";
import { StreamTable } from "./streams.ts";
import type { ServicerOptions } from "./servicer-options.ts";
import type { ServicerObserver, TaskInfo } from "./observer.ts";
import type { Outcome, ResultPool } from "./pool/types.ts";
import { readConfined } from "./files.ts";
import { callContext, type CallContext } from "../core/call-context.ts";
import { Snapshots } from "./snapshots.ts";
import { Isolation } from "./isolation.ts";
import { userError } from "./method-errors.ts";
import { serveTraced, traceTaskDone } from "./tracing.ts";
import type { LazyAbort } from "./lazy-abort.ts";
import { runTask, type TaskHost } from "./task-run.ts";

const noop = (): void => {};

interface Held {
  obj: object;
  cls: string;
}

/** The transport-agnostic agent server core. */
export class Servicer {
  readonly opts: ServicerOptions;
  readonly capacity: Capacity;
  readonly limits: Limits;
  /** Refs codec for values this server decodes: references to itself resolve locally. */
  readonly refs: RefCodec;
  readonly #objects = new Map<string, Held>();
  readonly #running = new Map<string, LazyAbort>();
  /** Fresh waits parked for tasks not prepared yet; refusals remembered by task id. */
  readonly #arrivals: Arrivals;
  readonly #hooks: LocalHooks;
  readonly #taskHost: TaskHost;
  /** A sync answer's encoder (large leaves stay split: written once, at once). */
  readonly #encodeSplit = (x: unknown): Frame => encodeFrame(x, this.refs, this.limits);
  readonly #cpu = new CpuMeter();
  readonly #streams = new StreamTable({ servicer: () => this, encode: (b, m) => this.#encodeResult(b, m), userError: (e) => this.#userError(e) });
  readonly #snaps = new Snapshots({ object: (oid) => this.#objects.get(oid)?.obj, remove: (oid) => void this.#objects.delete(oid), encode: (v) => this.encode(v), decode: (b) => this.decode(b) });
  /** Agents in child servers of their own (`isolate`); undefined: every agent lives here. */
  readonly #iso: Isolation | undefined;
  #closed = false;

  constructor(opts: ServicerOptions) {
    this.opts = opts;
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.#arrivals = new Arrivals(this.limits.maxParkedWaits);
    this.capacity = new Capacity(opts.capacity, opts.maxQueue);
    const self = this;
    this.#hooks = {
      isSelf: (a) => self.isSelf(a),
      exportObject: (obj) => self.exportObject(obj),
      object: (oid) => self.#objects.get(oid)?.obj,
      task: (task) => self.localTask(task),
      stream: (id) => self.#streams.local(id),
    };
    this.refs = makeRefCodec(this.#hooks);
    this.#taskHost = {
      capacity: this.capacity,
      pool: opts.pool,
      running: this.#running,
      finish: (id, o, call, record) => this.#finish(id, o, call, record),
      prepare: (id, started) => void this.#prepare(id, started),
      encodeResult: (v, call) => this.#encodeResult(v, call.cls, call.method),
      userError: (e) => this.#userError(e),
      wireError: (e) => this.#wireError(e),
    };
    registerLocalServer(this.#hooks);
    this.#iso = opts.isolate && new Isolation(opts.isolate, { ...opts, prepare: async (id) => this.#prepare(id), settle: (id, o, call) => this.#finish(id, () => o, call) });
  }

  /** Waits parked for tasks not known here yet (for leak checks and metrics). */
  get parkedWaits(): number { return this.#arrivals.parked; }

  /** Streams running or holding unread items (for leak checks). */
  get openStreams(): number { return this.#streams.size; }

  /** Objects held. */
  get size(): number { return this.#objects.size + (this.#iso?.size ?? 0); }

  /** Is `a` this server? */
  isSelf(a: Address): boolean {
    const me = this.opts.address;
    if (me.child !== undefined) return a.child === me.child;
    if (a.child !== undefined || a.port !== me.port) return false;
    return a.host === me.host || !!this.opts.aliases?.includes(a.host);
  }

  /** Hold `obj` (if not held yet) and return a reference tag to it. */
  exportObject(obj: object): WireRefTag {
    const oid = (obj as { oid?: unknown }).oid;
    const id = isObjectId(oid) ? oid : randomId();
    if (!this.#objects.has(id)) {
      this.#roomForOne();
      this.#objects.set(id, { obj, cls: classInfo(obj.constructor).cls });
    }
    const info = classInfo(obj.constructor);
    return { $as: "ref", oid: id, cls: info.cls, m: info.methods, a: info.async, at: this.opts.address };
  }

  /** A local future for one of this server's tasks. */
  localTask(task: string): AsyncResult {
    const wait = async (): Promise<unknown> => {
      for (;;) {
        const o = await this.opts.pool.get(task, 60_000);
        if (o === "pending") continue;
        if (o.ok) return this.decode(o.value);
        throw errorFromWire(o.error, { host: this.opts.address.host, port: this.opts.address.port });
      }
    };
    return new AsyncResult(wait());
  }

  /** Stop accepting work and release the pool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    unregisterLocalServer(this.#hooks);
    for (const c of this.#running.values()) c.abort();
    this.#streams.close();
    await this.#iso?.close();
    await this.opts.pool.close();
  }

  /**
   * Handle one request; never rejects (failures are `error` responses). `gone` aborts when
   * the client connection the request came on closes: its async calls still queued then are
   * dropped (their results could only be read by references, and a client that died must not
   * keep the server busy for minutes). Calls already running go on.
   */
  async handle(raw: unknown, signal?: AbortSignal, gone?: AbortSignal): Promise<Response> {
    // Traced requests (a span was active at the caller) are served inside a span of their own.
    if ((raw as { trace?: unknown } | null)?.trace !== undefined) return serveTraced(raw as Record<string, unknown>, (oid) => this.#objects.get(oid)?.obj, (r) => this.handle(r, signal, gone));
    const obs = this.opts.observer;
    if (obs !== undefined) return this.#observed(obs, raw, signal, gone);
    try {
      const req = validateRequest(raw);
      return await this.#answer(req, signal, gone);
    } catch (e) {
      return { t: "error", error: this.#wireError(e) };
    }
  }

  /** `handle` that tells `obs` what it does (kept apart so a server without one pays nothing). */
  async #observed(obs: ServicerObserver, raw: unknown, signal?: AbortSignal, gone?: AbortSignal): Promise<Response> {
    const t0 = performance.now();
    let req: Request | undefined;
    let res: Response;
    let cls: string | undefined;
    try {
      req = validateRequest(raw);
      const h = "oid" in req ? this.#objects.get(req.oid) : undefined;
      cls = req.t === "create" ? req.cls : "oid" in req ? h?.cls ?? this.#iso?.cls(req.oid) : undefined;
      obs.started(req, cls);
      // The object found here serves the call too (one lookup in a table of a million agents, not two).
      res = await this.#answer(req, signal, gone, h);
    } catch (e) {
      res = { t: "error", error: this.#wireError(e) };
    }
    if (req !== undefined) obs.answered(req, res, (performance.now() - t0) / 1000, cls);
    return res;
  }

  /** `#dispatch`, plus the snapshot or restore a supervising client asked for (nothing for anyone else). */
  async #answer(req: Request, signal?: AbortSignal, gone?: AbortSignal, found?: Held): Promise<Response> {
    const iso = this.#iso?.route(req, signal);
    // A refused async call of an isolated agent is remembered like a local one (waits fail at once).
    if (iso) return req.t === "call" && req.task !== undefined ? iso.catch((e) => (this.#refuse(req.task!, e), Promise.reject(e))) : iso;
    return Snapshots.wanted(req) ? this.#snaps.answer(req, await this.#dispatch(req, signal, gone, found)) : this.#dispatch(req, signal, gone, found);
  }

  #wireError(e: unknown): WireError { return errorToWire(e, { hideStacks: this.opts.hideStacks }); }

  /** An error a method threw (method-errors.ts). */
  #userError(e: unknown): WireError { return userError(e, this.opts.hideStacks); }

  decode(bytes: Frame): unknown { return decodeValue(bytes, this.refs, this.limits); }

  encode(v: unknown): Uint8Array { return encodeValue(v, this.refs, this.limits); }

  /** `found`: the object of `req.oid`, if the caller looked it up already. */
  async #dispatch(req: Request, signal?: AbortSignal, gone?: AbortSignal, found?: Held): Promise<Response> {
    switch (req.t) {
      case "call":
        return this.#call(req, signal, gone, found);
      case "wait": {
        const ms = Math.max(0, Math.min(req.timeoutMs, this.opts.maxTimeoutSeconds * 1000));
        const o = await this.#wait(req.task, ms, req.fresh === true, signal, req.keep === true);
        if (o === "pending") return { t: "pending" };
        return o.ok ? { t: "value", value: o.value } : { t: "error", error: o.error };
      }
      case "create":
        return this.#create(req.oid, req.cls, req.args);
      case "delete":
        this.#objects.delete(req.oid);
        return { t: "ok" };
      case "deleteAll":
        this.#objects.clear();
        await this.#iso?.deleteAll();
        return { t: "ok" };
      case "describe": {
        const h = this.#held(req.oid);
        const { cls, methods, async, streams } = classInfo(h.obj.constructor);
        return { t: "value", value: encodeValue({ cls, methods, async, streams }) };
      }
      case "alive":
        return { t: "ok" };
      case "stop":
        queueMicrotask(() => this.opts.onStop?.());
        return { t: "ok" };
      case "list":
        return { t: "value", value: encodeValue([...this.agentList(), ...((await this.#iso?.list()) ?? [])]) };
      case "info":
        return { t: "value", value: encodeValue(this.serverInfo()) };
      case "memory": {
        const h = this.#held(req.oid);
        const mem = (h.obj as { memory?: { get?: () => unknown } }).memory;
        return { t: "value", value: this.encode(typeof mem?.get === "function" ? mem.get() : null) };
      }
      case "setModelConfigs": {
        if (!this.opts.setModelConfigs) throw new UnimplementedError("this server does not take model configs");
        await this.opts.setModelConfigs(this.decode(req.configs));
        return { t: "ok" };
      }
      case "download": {
        if (!this.opts.fileDir) throw new PermissionDeniedError("this server has no file dir to download from");
        return { t: "value", value: await readConfined(this.opts.fileDir, req.path, this.limits.maxMessageBytes) };
      }
      case "cancel":
        if (!this.#streams.cancel(req.task)) this.#running.get(req.task)?.abort();
        return { t: "ok" };
      case "next":
        return this.#streams.next(req, signal);
      case "release":
        await this.opts.pool.release(req.task);
        return { t: "ok" };
      case "listen": case "cbcall": case "cbdrop": // IPC-only: validation refuses them from peers
        throw new UnimplementedError(`${req.t} is answered by a child server's IPC binding`);
    }
  }

  /** Reserve `task` in the pool and wake the waits parked for it (a promise only if the pool's is). */
  #prepare(task: string, started = false): Promise<void> | void {
    const p = this.opts.pool.prepare(task, started);
    if (p) return p.then(() => this.#arrivals.prepared(task));
    this.#arrivals.prepared(task);
  }

  /** `#refuse`, then throw `e`. */
  #refused(task: string, e: unknown): never { this.#refuse(task, e); throw e; }
  /** Remember why `task`'s call was refused (waits and references fail at once); not a momentary refusal (full pool: resubmitted). */
  #refuse(task: string, e: unknown): void {
    if (!isId(task) || (e instanceof ResourceExhaustedError && e.retryAfterMs !== undefined)) return;
    this.#arrivals.refuse(task, this.#wireError(e));
  }

  /**
   * Wait for a task's outcome. A *fresh* wait may arrive before the call that creates the
   * task (it came with a reference, or was sent right behind the call on another stream): an
   * unknown task is then waited for until it is prepared here, within the same time budget.
   */
  async #wait(task: string, ms: number, fresh: boolean, signal: AbortSignal | undefined, keep: boolean): Promise<Outcome | "pending"> {
    try {
      return await this.opts.pool.get(task, ms, signal, keep);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      const refused = this.#arrivals.refusal(task);
      if (refused) return refused;
      if (!fresh) throw e;
    }
    const until = performance.now() + ms;
    if (!(await this.#arrivals.whenPrepared(task, ms, signal))) return "pending";
    const refused = this.#arrivals.refusal(task);
    if (refused) return refused;
    return this.opts.pool.get(task, Math.max(0, Math.round(until - performance.now())), signal, keep);
  }

  /** Throws RESOURCE_EXHAUSTED when the object table is full. */
  #roomForOne(): void {
    const max = this.opts.maxAgents;
    if (max !== undefined && this.#objects.size >= max) {
      throw new ResourceExhaustedError(`server ${this.opts.serverId} holds its maximum of ${max} objects (maxAgents)`);
    }
  }

  #held(oid: string): Held {
    const h = this.#objects.get(oid);
    if (!h) throw new NotFoundError(`object ${oid} not found on server ${this.opts.serverId}`);
    return h;
  }

  #create(oid: string, cls: string, argsFrame: Uint8Array): Response {
    const C = this.opts.resolveClass(cls);
    if (!C) throw new NotFoundError(`class ${cls} is not registered on server ${this.opts.serverId}`);
    if (this.#objects.has(oid)) throw new AgentServerError(`object ${oid} already exists`, { code: "ALREADY_EXISTS" });
    this.#roomForOne();
    const args = this.decode(argsFrame);
    if (!Array.isArray(args)) throw new CodecError("constructor arguments must be an array");
    let obj: object;
    try {
      obj = withPresetOid(oid, () => new (C as unknown as new (...a: unknown[]) => object)(...args));
    } catch (e) {
      const w = this.#wireError(e);
      return { t: "error", error: { ...w, code: "INVALID_ARGUMENT", message: `constructor of ${cls} threw: ${w.message}` } };
    }
    this.#objects.set(oid, { obj, cls });
    return { t: "ok" };
  }

  async #call(req: CallRequest, signal?: AbortSignal, gone?: AbortSignal, found?: Held): Promise<Response> {
    const { oid, name, task, timeoutMs } = req;
    try {
      const h = found ?? this.#held(oid);
      const obj = h.obj as Record<string, unknown>;
      if (!isReachableName(name)) throw new UnimplementedError(`'${name}' is not reachable remotely on ${h.cls}`);
      const info = classInfo(h.obj.constructor);
      if (!info.methodSet.has(name)) {
        if (!(name in obj)) throw new UnimplementedError(`object of class ${h.cls} has no method or attribute '${name}'`);
        const v = obj[name];
        if (typeof v === "function") throw new UnimplementedError(`'${name}' of ${h.cls} is a function field, not a method`);
        return { t: "value", value: this.#encodeResult(await v, h.cls, name, this.#encodeSplit) };
      }
      const args = this.decode(req.args);
      if (!Array.isArray(args)) throw new CodecError("call arguments must be an array");
      const fn = obj[name] as (...a: unknown[]) => unknown;
      if (info.streamSet.has(name)) return this.#streams.start(task, `${h.cls}.${name}`, () => fn.apply(obj, args), timeoutMs === undefined ? undefined : performance.now() + timeoutMs, gone);
      if (!info.asyncSet.has(name)) {
        const ctx: CallContext = { signal: signal ?? new AbortController().signal, agent: { cls: h.cls, oid, method: name } };
        let v: unknown;
        try {
          v = await callContext.run(ctx, () => fn.apply(obj, args));
        } catch (e) {
          return { t: "error", error: this.#userError(e) };
        }
        return { t: "value", value: this.#encodeResult(v, h.cls, name, this.#encodeSplit) };
      }
      const id = task ?? randomId(); // validated (validate.ts) when given
      this.capacity.admit();
      const holdMs = req.snap ? undefined : req.holdMs;
      // A solo call enters the pool only if not answered inline (task-run.ts); never with Redis.
      const alone = req.solo === true && !!holdMs && !!this.opts.pool.readNow && task === id;
      const prepared = alone ? undefined : this.#prepare(id);
      if (prepared) await prepared;
      const deadlineAt = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
      const r = runTask(this.#taskHost, { id, obj, fn, args, cls: h.cls, oid, method: name, deadlineAt, gone, holdMs, solo: alone });
      return r instanceof Promise ? r.catch((e: unknown) => this.#refused(id, e)) : r;
    } catch (e) {
      // A refused async call is remembered by its task id (waits and references fail at once).
      throw task === undefined ? e : this.#refused(task, e);
    }
  }

  #finish(task: string, outcome: () => Outcome, call: TaskInfo, record = true): Outcome {
    this.#running.delete(task);
    let o: Outcome;
    try {
      o = outcome();
    } catch (e) {
      o = { ok: false, error: this.#wireError(e) };
    }
    this.opts.observer?.taskDone(task, o, call);
    traceTaskDone(task, o);
    // Redis away: the Redis pool keeps the outcome for waiters here and writes it on return.
    if (record) this.opts.pool.set(task, o)?.catch(noop);
    return o;
  }

  /** Encode what `cls.method` returned (sync answers: split); what cannot travel is INTERNAL, naming it. */
  #encodeResult<F extends Frame = Uint8Array>(v: unknown, cls: string, method?: string, encode: (v: unknown) => F = (x) => this.encode(x) as F): F {
    try {
      return encode(v);
    } catch (e) {
      if (e instanceof AgentServerError && e.code === "RESOURCE_EXHAUSTED") throw e;
      const name = method === undefined ? cls : `${cls}.${method}`;
      throw new AgentServerError(`unserializable return value of ${name}: ${(e as Error).message}`, { code: "INTERNAL" });
    }
  }

  /** The `list` answer. */
  agentList(): AgentInfo[] { return describeAgents(this.#objects); }

  /** The `info` answer: computed at once, cpu from usage since the previous ask. */
  serverInfo(): ServerInfo {
    return serverInfoOf({ id: this.opts.serverId, cpu: this.#cpu, size: this.size, capacity: this.capacity, results: this.opts.pool.size(), extra: this.opts.observer?.info?.() });
  }
}
