/**
 * The options of `RpcAgentServerLauncher`: their defaults, their checks, and what they mean
 * for the addresses the server binds, advertises and answers to.
 */
import { DEFAULTS } from "../../core/defaults.ts";
import type { ModelConfig } from "../../models/store.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import type { PemSource } from "../../core/tls.ts";
import { checkRestartPolicy, type RestartPolicy } from "../../client/supervisor.ts";

/** Options of `RpcAgentServerLauncher` (AgentScope's, camelCased, plus a few extras). */
export interface LauncherOptions {
  /** Host clients use to reach the server (put in the references it hands out). Default "localhost". */
  host?: string;
  /** Port; 0 or undefined picks a free one, readable from `launcher.port` after `launch()`. */
  port?: number;
  /** Async calls run at once; more wait in a bounded queue. Default 32. */
  capacity?: number;
  /** Where async results are kept. Default "local". */
  poolType?: "local" | "redis";
  /** Redis of the redis pool. Default "redis://localhost:6379". */
  redisUrl?: string;
  /** Results kept by the local pool. Default 8192. */
  maxPoolSize?: number;
  /** Seconds a result is kept. Default 7200. */
  maxExpireTime?: number;
  /** Longest single server-side wait for a result, seconds. Default 5. */
  maxTimeoutSeconds?: number;
  /** Listen on 127.0.0.1 only. When false the server listens on `host`. Default false (like AgentScope). */
  localMode?: boolean;
  /** Load the `@dist` classes of every file in this directory. EXECUTES those files. */
  agentDir?: string;
  /** Classes the server may construct (`@dist` classes; others are registered by `cls.name`). */
  customAgentClasses?: Function[];
  /** Server id. Default `generateServerId(host, port)`. */
  serverId?: string;
  /** Accepted for AgentScope compatibility; actorscope does not talk to Studio. */
  studioUrl?: string;
  /** Shared secret every call must present. Default env `AS_SERVER_TOKEN`. */
  token?: string;
  /** Allow a non-loopback listener without a token (anyone who reaches it can run your agents). */
  insecure?: boolean;
  /** Largest message accepted or sent, bytes. Default 32 MiB. */
  maxMessageBytes?: number;
  /** Async calls that may wait for a slot before new ones fail RESOURCE_EXHAUSTED. Default 65 536. */
  maxQueue?: number;
  /** Leave remote stack traces out of errors sent to callers. */
  hideStacks?: boolean;
  /** Directory `RpcClient.downloadFile` may read from; downloads are refused without one. */
  fileDir?: string;
  /** Model configs to load at launch: a JSON file path, one config, or a list. */
  modelConfigs?: string | ModelConfig | ModelConfig[];
  /** How long `shutdown()` lets in-flight calls finish before cutting them, ms. Default 5000. */
  shutdownGraceMs?: number;
  /** Serve over TLS with this certificate (chain): PEM text, a Buffer, or a file path. Needs `tlsKey`. */
  tlsCert?: PemSource;
  /** Private key of `tlsCert`: PEM text, a Buffer, or a file path. */
  tlsKey?: PemSource;
  /**
   * Require client certificates signed by this CA (PEM text, Buffer or path; needs `tlsCert`).
   * A server that requires them counts as authenticated: it may listen beyond loopback without a token.
   */
  tlsClientCa?: PemSource;
  /**
   * Peers this server may dial when a value it receives names them (a proxy or future held
   * by another server): `host` or `host:port` entries, or `"any"`. Loopback peers are always
   * allowed. A refused peer fails the call that needed it with PERMISSION_DENIED at once.
   * Default: loopback only (a server never dials an address just because a caller named it).
   */
  allowPeers?: string[] | "any";
  /** Most objects held at once; past it `create` fails RESOURCE_EXHAUSTED. Default 1 000 000. */
  maxAgents?: number;
  /**
   * Items a stream's producer runs ahead of its consumer before pausing (default 32): what a
   * slow consumer may cost this server per stream, however slow it is.
   */
  streamWindow?: number;
  /**
   * Redis URL of a registry to keep this server's record in (id, address, load; never the
   * token), renewed every second under a 5 s expiry and deleted on shutdown. Read it with
   * `listServers(url)`, `ServerGroup.fromRegistry(url)`, `as-server status --registry URL`.
   * Redis being away never stops the server: it registers again when Redis returns.
   */
  registry?: string;
  /**
   * Serve Prometheus metrics at `http://<bind host>:<metricsPort>/metrics`; 0 picks a free
   * port, readable from `launcher.metricsPort` after `launch()`. Off by default. The endpoint
   * has no authentication: it binds the same address as the server (loopback in local mode).
   */
  metricsPort?: number;
  /**
   * Run every agent this server creates in a child process of its own, spawned and supervised
   * by the server: an agent's `process.exit`, uncaught exception or `kill -9` ends only that
   * child, the other agents go on, and the agent is re-created with the same oid (from its
   * last snapshot when its class defines `snapshot()`/`restore()`), within `restart`. Costs one
   * process per agent. Default false. (`as-server start --isolate`.)
   */
  isolate?: boolean;
  /** Restart budget of each isolated agent. Default `{ maxRestarts: 3 }` (within 60 s). */
  restart?: RestartPolicy;
}

/** Options with every default filled in. */
export type ResolvedLauncherOptions = Required<Pick<LauncherOptions, "host" | "capacity" | "poolType" | "redisUrl" | "maxPoolSize" | "maxExpireTime" | "maxTimeoutSeconds" | "localMode" | "maxMessageBytes" | "maxQueue" | "shutdownGraceMs" | "maxAgents">> & LauncherOptions;

/** Fill in defaults and check every option; throws TypeError naming the bad one. */
export function resolveOptions(opts: LauncherOptions): ResolvedLauncherOptions {
  if (opts === null || typeof opts !== "object") throw new TypeError("launcher options must be an object");
  const o: ResolvedLauncherOptions = {
    ...opts,
    host: opts.host ?? DEFAULTS.host,
    capacity: opts.capacity ?? DEFAULTS.capacity,
    poolType: opts.poolType ?? "local",
    redisUrl: opts.redisUrl ?? DEFAULTS.redisUrl,
    maxPoolSize: opts.maxPoolSize ?? DEFAULTS.maxPoolSize,
    maxExpireTime: opts.maxExpireTime ?? DEFAULTS.maxExpireTime,
    maxTimeoutSeconds: opts.maxTimeoutSeconds ?? DEFAULTS.maxTimeoutSeconds,
    localMode: opts.localMode ?? false,
    maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_LIMITS.maxMessageBytes,
    maxQueue: opts.maxQueue ?? DEFAULTS.maxQueue,
    shutdownGraceMs: opts.shutdownGraceMs ?? DEFAULTS.shutdownGraceMs,
    maxAgents: opts.maxAgents ?? DEFAULTS.maxAgents,
  };
  if (typeof o.host !== "string" || !o.host) throw new TypeError("host must be a non-empty string");
  if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535)) throw new TypeError(`port must be an integer in 0..65535, not ${o.port}`);
  if (o.allowPeers !== undefined && o.allowPeers !== "any" && !(Array.isArray(o.allowPeers) && o.allowPeers.every((x) => typeof x === "string" && x.length > 0))) {
    throw new TypeError('allowPeers must be "any" or a list of "host" / "host:port" strings');
  }
  for (const k of ["capacity", "maxPoolSize", "maxMessageBytes", "maxQueue", "maxAgents"] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new TypeError(`${k} must be a positive integer, not ${o[k]}`);
  }
  for (const k of ["maxExpireTime", "maxTimeoutSeconds"] as const) {
    if (typeof o[k] !== "number" || !(o[k] > 0)) throw new TypeError(`${k} must be a positive number, not ${o[k]}`);
  }
  if (typeof o.shutdownGraceMs !== "number" || !(o.shutdownGraceMs >= 0)) throw new TypeError("shutdownGraceMs must be a number ≥ 0");
  if (o.streamWindow !== undefined && !(Number.isInteger(o.streamWindow) && o.streamWindow >= 1)) throw new TypeError(`streamWindow must be a positive integer, not ${o.streamWindow}`);
  if (o.poolType !== "local" && o.poolType !== "redis") throw new TypeError(`poolType must be "local" or "redis", not ${String(o.poolType)}`);
  if (o.serverId !== undefined && (typeof o.serverId !== "string" || !o.serverId)) throw new TypeError("serverId must be a non-empty string");
  if (o.registry !== undefined && (typeof o.registry !== "string" || !/^rediss?:\/\/./.test(o.registry))) throw new TypeError("registry must be a redis:// or rediss:// URL");
  if (o.isolate !== undefined && typeof o.isolate !== "boolean") throw new TypeError("isolate must be a boolean");
  if (o.restart !== undefined) {
    checkRestartPolicy(o.restart);
    if (!o.isolate) throw new TypeError("restart is the budget of isolated agents: it needs isolate: true");
  }
  if (o.metricsPort !== undefined && (!Number.isInteger(o.metricsPort) || o.metricsPort < 0 || o.metricsPort > 65535)) throw new TypeError(`metricsPort must be an integer in 0..65535, not ${o.metricsPort}`);
  return o;
}

const WILDCARDS = new Set(["0.0.0.0", "::", "[::]"]);

/** True for names and addresses that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || h === "ip6-localhost" || /^127(\.\d{1,3}){3}$/.test(h) || h === "::ffff:127.0.0.1";
}

/**
 * What to bind for `host`: in local mode a loopback address given as `host` is bound as given
 * (`--host 127.0.0.2` must not quietly become 127.0.0.1), any other name binds 127.0.0.1.
 */
export function bindHostOf(host: string, localMode: boolean): string {
  if (!localMode) return host;
  const h = host.replace(/^\[|\]$/g, "");
  return /^127(\.\d{1,3}){3}$/.test(h) || h === "::1" ? host : "127.0.0.1";
}

/** A wildcard bind is not an address anyone can dial: hand out this machine's name instead. */
export function advertisedHost(host: string, localMode: boolean): string {
  if (!WILDCARDS.has(host)) return host;
  return localMode ? "localhost" : (require("node:os") as typeof import("node:os")).hostname();
}

/** Names that reach this server from this machine, so its own references resolve locally. */
export function aliasesOf(host: string, bindHost: string): string[] {
  const out = new Set([host, bindHost]);
  // Only when 127.0.0.1 (or every address) is what is bound: a server on 127.0.0.2 is not the
  // one at 127.0.0.1 with the same port.
  if (bindHost === "127.0.0.1" || bindHost === "localhost" || WILDCARDS.has(bindHost)) for (const h of ["localhost", "127.0.0.1", "::1"]) out.add(h);
  if (WILDCARDS.has(bindHost)) out.add((require("node:os") as typeof import("node:os")).hostname());
  return [...out];
}
