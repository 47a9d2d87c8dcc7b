/**
 * `Distributable`: the base that gives objects `toDist()` (AgentScope's RpcMeta role).
 * `x.toDist(conf)` clones `x` into a server from its recorded constructor arguments (same
 * `oid`); `X.toDist(conf, ...args)` creates the object remotely without building it here.
 * Without `host`/`port` a child server is spawned for the object (Bun IPC); with them the
 * object is created on that running server (gRPC).
 */
import { DEFAULTS } from "../core/defaults.ts";
import { ChildServer } from "./child-server.ts";
import { connectionFor } from "./connections.ts";
import { CTOR_ARGS } from "../core/decorators.ts";
import { AgentCreationError } from "../core/errors.ts";
import { currentModelConfigs } from "../models/store.ts";
import { takeOid } from "../core/oid.ts";
import { randomId } from "../core/ids.ts";
import { ServerGroup } from "./placement.ts";
import { makeRemote } from "./proxy.ts";
import { remoteState, type Remote, type RemoteState } from "./proxy-state.ts";
import { encodeArgsWhenReady } from "./ref-encode.ts";
import type { Transport } from "../core/transport.ts";
import { processLimits } from "./refs.ts";
import { classInfo, entryOf, IS_DISTRIBUTABLE, type ClassEntry } from "../core/registry.ts";
import { DEFAULT_RETRY, type RetryStrategy } from "./retry.ts";
import type { ClientTlsOption } from "../core/tls.ts";
import { checkRestartPolicy, type RestartPolicy } from "./supervisor.ts";
import { superviseChild } from "./supervised-child.ts";

/** Where and how an object is distributed. No `host`/`port` means child mode. */
export interface DistConf {
  /** Server host (independent mode). */
  host?: string;
  /** Server port (independent mode). */
  port?: number;
  /** Result pool size of a spawned child server. Default 8192. */
  maxPoolSize?: number;
  /** Seconds a child server keeps results. Default 7200. */
  maxExpireTime?: number;
  /** Longest single wait for a result, seconds (retried per `retryStrategy`). Default 5. */
  maxTimeoutSeconds?: number;
  /** Child servers open no network port at all; kept for AgentScope compatibility. Default true. */
  localMode?: boolean;
  /** How often, and how far apart, to re-wait for a result. */
  retryStrategy?: RetryStrategy;
  /** Shared secret for servers that require one. */
  token?: string;
  /** TLS for an independent server: `{ ca?, cert?, key? }`, `true` or `false` (see `RpcClientOptions.tls`). */
  tls?: ClientTlsOption;
  /** Concurrent async calls of a spawned child server. Default 32. */
  capacity?: number;
  /** Async calls a spawned child server queues beyond `capacity` before refusing (RESOURCE_EXHAUSTED). Default 65 536. */
  maxQueue?: number;
  /** Items a spawned child server's stream runs ahead of its consumer (flow control window). Default 32. */
  streamWindow?: number;
  /**
   * Spread objects over these servers instead of one `host`/`port` (see `ServerGroup`: round-robin
   * or least-loaded, dead servers skipped). `toDist(group)` is short for `toDist({ group })`.
   */
  group?: ServerGroup;
  /**
   * Child mode: re-create the object in a new child server when its child dies unexpectedly
   * (crash, kill -9, OOM), with the same oid and, if its class defines `snapshot()` and
   * `restore(state)`, the state of its last completed call (else from its constructor
   * arguments). Calls in flight at the crash fail UNAVAILABLE; later calls wait for the
   * restart. See `restartInfo()`. For objects a `ServerGroup` places, give `restart` to the group.
   */
  restart?: RestartPolicy;
}

/**
 * Base class of everything that can live in an agent server.
 *
 * @example
 * @dist class Counter extends Distributable {
 *   n = 0;
 *   inc(by = 1) { return (this.n += by); }
 * }
 * await using c = new Counter().toDist();
 * await c.inc(2); // 2
 */
export class Distributable {
  /**
   * Object id; the remote copy keeps it. Generated: 32 random hex characters. Objects created
   * with a chosen id (`RpcClient.createAgent(…, "alice")`) keep that one (1–128 characters of
   * `[A-Za-z0-9._:-]`).
   */
  readonly oid: string;

  constructor() {
    this.oid = takeOid();
  }

  /**
   * Clone this object into an agent server (from its constructor arguments); returns a proxy.
   * A `ServerGroup` picks the server. In child mode it throws AgentCreationError
   * (FAILED_PRECONDITION) at once, spawning nothing, when the class was defined where no
   * child can import it (`bun -e`), or when called by a module's top level while a child
   * server imports that module (a script without the `if (import.meta.main)` guard).
   */
  toDist(conf: DistConf | ServerGroup = {}): Remote<this> {
    if (remoteState(this)) return this as unknown as Remote<this>;
    const entry = requireEntry(this.constructor);
    const args = ((this as Record<symbol, unknown>)[CTOR_ARGS] as unknown[] | undefined) ?? [];
    return distribute<this>(entry, args, this.oid, conf);
  }

  /** Create an object of this class directly in an agent server (a `ServerGroup` picks which); it is never built locally. */
  static toDist<T, A extends unknown[]>(this: new (...a: A) => T, conf: DistConf | ServerGroup | true, ...args: A): Remote<T> {
    const entry = requireEntry(this);
    return distribute<T>(entry, args, randomId(), conf === true ? {} : conf);
  }
}

Object.defineProperty(Distributable.prototype, IS_DISTRIBUTABLE, { value: true });

function requireEntry(cls: Function): ClassEntry {
  const e = entryOf(cls);
  if (!e) throw new TypeError(`class ${cls.name} is not registered: decorate it with @dist`);
  return e;
}

function checkConf(conf: DistConf): void {
  if (conf === null || typeof conf !== "object") throw new TypeError("DistConf must be an object");
  if (conf.group !== undefined && (!(conf.group instanceof ServerGroup) || conf.host !== undefined || conf.port !== undefined)) {
    throw new TypeError("DistConf.group must be a ServerGroup, given without host/port");
  }
  if (conf.restart !== undefined) {
    checkRestartPolicy(conf.restart);
    if (conf.host !== undefined || conf.group !== undefined) throw new TypeError("DistConf.restart is for child mode; a ServerGroup takes its own { restart } option");
  }
  if ((conf.host === undefined) !== (conf.port === undefined)) throw new TypeError("DistConf needs both host and port (or neither, for child mode)");
  if (conf.port !== undefined && (!Number.isInteger(conf.port) || conf.port < 1 || conf.port > 65535)) {
    throw new TypeError(`DistConf.port must be an integer in 1..65535, not ${conf.port}`);
  }
  for (const k of ["maxPoolSize", "maxExpireTime", "maxTimeoutSeconds", "capacity", "maxQueue", "streamWindow"] as const) {
    const v = conf[k];
    if (v !== undefined && (typeof v !== "number" || !(v > 0))) throw new TypeError(`DistConf.${k} must be a positive number`);
  }
}

/** Create `entry` with `args` on the server `conf` names; returns its proxy at once. */
export function distribute<T>(entry: ClassEntry, args: unknown[], oid: string, target: DistConf | ServerGroup): Remote<T> {
  const conf = target instanceof ServerGroup ? { group: target } : target;
  checkConf(conf);
  if (conf.group) return conf.group.place<T>(entry, args, oid, conf);
  const maxWaitMs = (conf.maxTimeoutSeconds ?? DEFAULTS.maxTimeoutSeconds) * 1000;
  const retry = conf.retryStrategy ?? DEFAULT_RETRY;
  const info = classInfo(entry.cls);
  const encoded = (dest: "ipc" | "net", to?: Transport): Promise<Uint8Array> =>
    encodeArgsWhenReady(args, dest, to).catch((e) => {
      throw new AgentCreationError(`cannot send constructor arguments of ${entry.name}: ${(e as Error).message}`, { code: "INVALID_ARGUMENT", cause: e });
    });
  if (conf.host !== undefined && conf.port !== undefined) {
    const conn = connectionFor({ host: conf.host, port: conf.port }, { ...(conf.token === undefined ? {} : { token: conf.token }), ...(conf.tls === undefined ? {} : { tls: conf.tls }) });
    const ready = encoded("net", conn.transport).then((payload) => conn.create(oid, entry.name, payload));
    return makeRemote<T>({ oid, conn, ready, info, created: true, retry, maxWaitMs, host: conf.host, port: conf.port });
  }
  if (!entry.module && entry.unimportable) {
    throw new AgentCreationError(
      `class ${entry.name} was defined in ${entry.unimportable}, which a child server cannot import: child mode ` +
        `rebuilds the object in a new process by importing the module that defines its class. Declare ${entry.name} ` +
        "at the top level of a module file (e.g. agents.ts), export it, and import it from your script.",
      { code: "FAILED_PRECONDITION" },
    );
  }
  // A class with no module file is one built into this program (e.g. DialogAgent inside the
  // compiled binary): the child has it registered already.
  const childOpts = {
    modules: entry.module ? [entry.module] : [],
    classes: entry.module ? [entry.name] : [],
    agent: { cls: entry.name, oid },
    capacity: conf.capacity ?? DEFAULTS.capacity,
    maxQueue: conf.maxQueue ?? DEFAULTS.maxQueue,
    maxMessageBytes: processLimits().maxMessageBytes,
    maxPoolSize: conf.maxPoolSize ?? DEFAULTS.maxPoolSize,
    maxExpireTime: conf.maxExpireTime ?? DEFAULTS.maxExpireTime,
    maxTimeoutSeconds: conf.maxTimeoutSeconds ?? DEFAULTS.maxTimeoutSeconds,
    modelConfigs: currentModelConfigs(),
    ...(conf.streamWindow === undefined ? {} : { streamWindow: conf.streamWindow }),
  };
  if (conf.restart) {
    const sup = superviseChild(entry, oid, (to) => encoded("ipc", to), childOpts, conf.restart);
    const st: RemoteState = { oid, conn: sup.conn, ready: sup.ready, info, owner: sup.owner, retry, maxWaitMs, host: "", port: undefined };
    // The proxy's host follows the object from child to child.
    Object.defineProperty(st, "host", { get: () => sup.conn.where.host });
    return makeRemote<T>(st);
  }
  const child = new ChildServer(childOpts);
  const payload = encoded("ipc", child.conn.transport);
  payload.catch(() => child.stop());
  // The create is issued at once: the child's transport holds it until the child serves (a
  // spare takes it with its config). Whichever fails first is reported: the arguments' encoding,
  // or the child's start (its own error, before the create's, which only fails when it exits).
  const created = payload.then((p) => child.conn.create(oid, entry.name, p));
  const ready = Promise.all([created, child.ready]).then(() => {});
  ready.catch(() => child.stop());
  return makeRemote<T>({ oid, conn: child.conn, ready, info, owner: child, retry, maxWaitMs, host: child.conn.where.host, port: undefined });
}
