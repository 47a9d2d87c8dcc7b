/**
 * The servicer: the transport-agnostic core of an agent server. It owns the object table,
 * runs calls (sync inline, async under `capacity` into the result pool), answers management
 * requests, and turns every failure into a wire error. The IPC and gRPC bindings only move
 * `Request`/`Response` messages in and out of `handle()`.
 */
import { AsyncResult } from "../client/async-result.ts";
import { decodeValue, encodeValue, type RefCodec, type WireRefTag } from "../core/codec.ts";
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
import { type AgentInfo, type Request, type Response, type ServerInfo } from "../core/protocol.ts";
import { isId, isObjectId, randomId } from "../core/ids.ts";
import { makeRefCodec, registerLocalServer, unregisterLocalServer, type LocalHooks } from "../client/refs.ts";
import { classInfo, isReachableName, type AnyClass } from "../core/registry.ts";
import type { Address } from "../core/transport.ts";
import { withPresetOid } from "../core/oid.ts";
import { Capacity } from "./capacity.ts";
import { validateRequest } from "./validate.ts";
import type { ServicerObserver } from "./observer.ts";

/** How long the refusal of an async call is remembered for waits that come after it. */
const REFUSAL_KEEP_MS = 60_000;
/** Most refusals remembered at once (the oldest are forgotten first). */
const MAX_REFUSALS = 16_384;
import type { Outcome, ResultPool } from "./pool/types.ts";
import { readConfined } from "./files.ts";
import { callContext, type CallContext } from "../core/call-context.ts";

/** Marks an error as thrown by the called method (not by the servicer around it). */
class ThrownByMethod {
  constructor(readonly error: unknown) {}
}

/** Everything a servicer needs from its launcher. */
export interface ServicerOptions {
  serverId: string;
  /** How other processes reach this server (used in references it hands out; a child's gains a port when it opens a listener). */
  address: Address;
  /** Other names this server answers to (e.g. "localhost" and "127.0.0.1" for a loopback bind). */
  aliases?: string[];
  /** Classes this server may construct, by registered name. */
  resolveClass(name: string): AnyClass | undefined;
  capacity: number;
  /** Async calls that may wait for a slot before new ones are refused. */
  maxQueue: number;
  /** Most objects held; past it `create` (and objects exported by value) fail RESOURCE_EXHAUSTED. Default unbounded. */
  maxAgents?: number;
  pool: ResultPool;
  /** Longest server-side wait for a result, seconds. */
  maxTimeoutSeconds: number;
  limits?: Limits;
  /** Leave remote stacks out of errors sent to callers. */
  hideStacks?: boolean;
  /** Directory `download` may read from; downloads are refused without one. */
  fileDir?: string;
  /** Called after a `stop` request was answered. */
  onStop?(): void;
  /** Model config hooks (LLM agents). */
  setModelConfigs?(configs: unknown): void | Promise<void>;
  /** Metrics, call counts and the event log (server/observer.ts); none by default. */
  observer?: ServicerObserver;
}

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
  readonly #running = new Map<string, AbortController>();
  /** Fresh waits for tasks not prepared yet, by task id. */
  readonly #preparing = new Map<string, Set<() => void>>();
  /** Fresh waits parked in `#preparing`, all tasks together (bounded). */
  #parked = 0;
  /**
   * Async calls refused before they became tasks (unknown object, bad arguments, a full
   * queue), by the task id their caller chose: a wait or a reference for such a task gets the
   * refusal at once instead of waiting for a task that will never exist. Oldest first;
   * bounded, and each kept for `REFUSAL_KEEP_MS`.
   */
  readonly #refused = new Map<string, { error: WireError; at: number }>();
  readonly #hooks: LocalHooks;
  #cpuMark = { at: performance.now(), usage: process.cpuUsage() };
  #closed = false;

  constructor(opts: ServicerOptions) {
    this.opts = opts;
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.capacity = new Capacity(opts.capacity, opts.maxQueue);
    const self = this;
    this.#hooks = {
      isSelf: (a) => self.isSelf(a),
      exportObject: (obj) => self.exportObject(obj),
      object: (oid) => self.#objects.get(oid)?.obj,
      task: (task) => self.localTask(task),
    };
    this.refs = makeRefCodec(this.#hooks);
    registerLocalServer(this.#hooks);
  }

  /** Objects held. */
  get size(): number {
    return this.#objects.size;
  }

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
    await this.opts.pool.close();
  }

  /** Handle one request; never rejects (failures are `error` responses). */
  /**
   * `gone` aborts when the client connection the request came on closes: its async calls
   * still queued then are dropped (their results could only be read by references, and a
   * client that died must not keep the server busy for minutes). Calls already running go on.
   */
  async handle(raw: unknown, signal?: AbortSignal, gone?: AbortSignal): Promise<Response> {
    const obs = this.opts.observer;
    if (obs !== undefined) return this.#observed(obs, raw, signal, gone);
    try {
      const req = validateRequest(raw);
      return await this.#dispatch(req, signal, gone);
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
      cls = req.t === "create" ? req.cls : "oid" in req ? this.#objects.get(req.oid)?.cls : undefined;
      obs.started(req);
      res = await this.#dispatch(req, signal, gone);
    } catch (e) {
      res = { t: "error", error: this.#wireError(e) };
    }
    if (req !== undefined) obs.answered(req, res, (performance.now() - t0) / 1000, cls);
    return res;
  }

  #wireError(e: unknown): WireError {
    return errorToWire(e, { hideStacks: this.opts.hideStacks });
  }

  /**
   * An error a method threw. A system error from the method's own remote calls (say, a
   * reference whose server is gone) keeps its code and its message naming that server, and is
   * marked as raised inside the method — so the caller does not take it for this server's own.
   */
  #userError(e: unknown): WireError {
    if (e instanceof AgentServerError && e.code !== "UNKNOWN") {
      const remote: WireError["remote"] = { name: e.name, message: e.message };
      if (!this.opts.hideStacks && e.stack) remote.stack = e.stack;
      return { code: e.code, message: e.message, remote };
    }
    return this.#wireError(e);
  }

  decode(bytes: Uint8Array): unknown {
    return decodeValue(bytes, this.refs, this.limits);
  }

  encode(v: unknown): Uint8Array {
    return encodeValue(v, this.refs, this.limits);
  }

  async #dispatch(req: Request, signal?: AbortSignal, gone?: AbortSignal): Promise<Response> {
    switch (req.t) {
      case "call":
        if (req.task === undefined) return this.#call(req.oid, req.name, req.args, req.task, req.timeoutMs, signal);
        try {
          return await this.#call(req.oid, req.name, req.args, req.task, req.timeoutMs, signal, gone);
        } catch (e) {
          this.#refuse(req.task, e);
          throw e;
        }
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
        return { t: "ok" };
      case "describe": {
        const h = this.#held(req.oid);
        const { cls, methods, async } = classInfo(h.obj.constructor);
        return { t: "value", value: encodeValue({ cls, methods, async }) };
      }
      case "alive":
        return { t: "ok" };
      case "stop":
        queueMicrotask(() => this.opts.onStop?.());
        return { t: "ok" };
      case "list":
        return { t: "value", value: encodeValue(this.agentList()) };
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
        this.#running.get(req.task)?.abort();
        return { t: "ok" };
      case "release":
        await this.opts.pool.release(req.task);
        return { t: "ok" };
      case "listen":
        // Never reaches here from a peer (validation refuses it); a child's IPC binding answers it.
        throw new UnimplementedError("listen is answered by a child server's IPC binding");
    }
  }

  /**
   * Remember why the async call for `task` was refused, so waits and references for it fail
   * at once with that reason. A momentary refusal (full pool: the caller resubmits the same
   * task) is not remembered.
   */
  #refuse(task: string, e: unknown): void {
    if (!isId(task) || (e instanceof ResourceExhaustedError && e.retryAfterMs !== undefined)) return;
    const now = performance.now();
    this.#refused.delete(task);
    this.#refused.set(task, { error: this.#wireError(e), at: now });
    for (const [t, r] of this.#refused) {
      if (this.#refused.size <= MAX_REFUSALS && now - r.at < REFUSAL_KEEP_MS) break;
      this.#refused.delete(t);
    }
    const early = this.#preparing.get(task);
    if (early) for (const wake of [...early]) wake();
  }

  #refusal(task: string): Outcome | undefined {
    const r = this.#refused.get(task);
    if (!r) return undefined;
    if (performance.now() - r.at < REFUSAL_KEEP_MS) return { ok: false, error: r.error };
    this.#refused.delete(task);
    return undefined;
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
      const refused = this.#refusal(task);
      if (refused) return refused;
      if (!fresh) throw e;
    }
    const until = performance.now() + ms;
    if (!(await this.#prepared(task, ms, signal))) return "pending";
    const refused = this.#refusal(task);
    if (refused) return refused;
    return this.opts.pool.get(task, Math.max(0, Math.round(until - performance.now())), signal, keep);
  }

  /** Resolves true when `task` is prepared on this server within `ms`, false otherwise. */
  #prepared(task: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve(false);
    if (this.#parked >= this.limits.maxParkedWaits) {
      return Promise.reject(
        new ResourceExhaustedError(`too many waits for tasks not known here yet (${this.limits.maxParkedWaits}, Limits.maxParkedWaits)`),
      );
    }
    this.#parked++;
    return new Promise((resolve) => {
      let set = this.#preparing.get(task);
      if (!set) this.#preparing.set(task, (set = new Set()));
      const waiters = set;
      const done = (ok: boolean) => {
        if (!waiters.has(wake)) return;
        this.#parked--;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        waiters.delete(wake);
        if (waiters.size === 0 && this.#preparing.get(task) === waiters) this.#preparing.delete(task);
        resolve(ok);
      };
      const wake = () => done(true);
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), ms);
      signal?.addEventListener("abort", onAbort, { once: true });
      waiters.add(wake);
    });
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

  async #call(oid: string, name: string, argsFrame: Uint8Array, task: string | undefined, timeoutMs: number | undefined, signal?: AbortSignal, gone?: AbortSignal): Promise<Response> {
    const h = this.#held(oid);
    const obj = h.obj as Record<string, unknown>;
    if (!isReachableName(name)) throw new UnimplementedError(`'${name}' is not reachable remotely on ${h.cls}`);
    const info = classInfo(h.obj.constructor);
    if (!info.methodSet.has(name)) {
      if (!(name in obj)) throw new UnimplementedError(`object of class ${h.cls} has no method or attribute '${name}'`);
      const v = obj[name];
      if (typeof v === "function") throw new UnimplementedError(`'${name}' of ${h.cls} is a function field, not a method`);
      return { t: "value", value: this.#encodeResult(await v, `${h.cls}.${name}`) };
    }
    const args = this.decode(argsFrame);
    if (!Array.isArray(args)) throw new CodecError("call arguments must be an array");
    const fn = obj[name] as (...a: unknown[]) => unknown;
    if (!info.asyncSet.has(name)) {
      const ctx: CallContext = { signal: signal ?? new AbortController().signal };
      let v: unknown;
      try {
        v = await callContext.run(ctx, () => fn.apply(obj, args));
      } catch (e) {
        return { t: "error", error: this.#userError(e) };
      }
      return { t: "value", value: this.#encodeResult(v, `${h.cls}.${name}`) };
    }
    const id = task && isId(task) ? task : randomId();
    const deadlineAt = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
    this.capacity.admit();
    await this.opts.pool.prepare(id);
    const early = this.#preparing.get(id);
    if (early) for (const wake of [...early]) wake();
    const ctl = new AbortController();
    this.#running.set(id, ctl);
    this.capacity
      .run(
        (slot) =>
          callContext.run({ signal: ctl.signal, task: id, suspend: () => slot.suspend() }, async () => {
            try {
              return await fn.apply(obj, args);
            } catch (e) {
              throw new ThrownByMethod(e);
            }
          }),
        deadlineAt,
        gone,
      )
      .then(
        (v) => this.#finish(id, () => ({ ok: true, value: this.#encodeResult(v, `${h.cls}.${name}`) })),
        (e) => this.#finish(id, () => ({ ok: false, error: e instanceof ThrownByMethod ? this.#userError(e.error) : this.#wireError(e) })),
      );
    return { t: "task", task: id };
  }

  #finish(task: string, outcome: () => Outcome): void {
    this.#running.delete(task);
    let o: Outcome;
    try {
      o = outcome();
    } catch (e) {
      o = { ok: false, error: this.#wireError(e) };
    }
    this.opts.observer?.taskDone(task, o);
    this.opts.pool.set(task, o).catch(() => {
      // Redis is away: the Redis pool keeps the outcome for waiters on this server and writes it
      // when the connection returns; nothing else can be done here.
    });
  }

  /** Encode what `method` (`Class.name`) returned; what cannot travel is INTERNAL, naming it. */
  #encodeResult(v: unknown, method: string): Uint8Array {
    try {
      return this.encode(v);
    } catch (e) {
      if (e instanceof AgentServerError && e.code === "RESOURCE_EXHAUSTED") throw e;
      throw new AgentServerError(`unserializable return value of ${method}: ${(e as Error).message}`, { code: "INTERNAL" });
    }
  }

  /** The `list` answer. */
  agentList(): AgentInfo[] {
    const out: AgentInfo[] = [];
    for (const [id, h] of this.#objects) {
      const o = h.obj as { name?: unknown; sysPrompt?: unknown; modelConfigName?: unknown; model?: { modelType?: string } };
      const e: AgentInfo = { id, cls: h.cls };
      if (typeof o.name === "string") e.name = o.name;
      if (typeof o.sysPrompt === "string") e.sysPrompt = o.sysPrompt;
      if (typeof o.modelConfigName === "string") {
        e.model = { configName: o.modelConfigName };
        if (o.model?.modelType) e.model.modelType = o.model.modelType;
      }
      out.push(e);
    }
    return out;
  }

  /** The `info` answer: computed at once, cpu from usage since the previous ask. */
  serverInfo(): ServerInfo {
    const now = performance.now();
    const usage = process.cpuUsage();
    const spent = usage.user + usage.system - (this.#cpuMark.usage.user + this.#cpuMark.usage.system);
    const wall = (now - this.#cpuMark.at) * 1000;
    this.#cpuMark = { at: now, usage };
    return {
      pid: process.pid,
      id: this.opts.serverId,
      cpu: wall > 0 ? Math.round((spent / wall) * 1000) / 10 : 0,
      mem: Math.round((process.memoryUsage.rss() / 1048576) * 10) / 10,
      size: this.#objects.size,
      capacity: this.capacity.limit,
      pending: this.capacity.running + this.capacity.queued,
      results: this.opts.pool.size(),
      ...this.opts.observer?.info?.(),
    };
  }
}
