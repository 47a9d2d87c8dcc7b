/**
 * What a `ServerGroup` is made of: its servers and options, as the user gives them, checked
 * once at construction (every mistake is a TypeError at once, naming the bad entry).
 */
import { checkRestartPolicy, type RestartPolicy } from "./supervisor.ts";
import type { ClientTlsOption } from "../core/tls.ts";

/** One server of a group. */
export interface GroupServer {
  host: string;
  port: number;
  /** Token of this server, when it differs from the group's. */
  token?: string;
  /** TLS of this server, when it differs from the group's. */
  tls?: ClientTlsOption;
}

/** How a group picks the server for each new object. */
export type PlacementStrategy = "round-robin" | "least-loaded";

/** Options of `ServerGroup`. */
export interface ServerGroupOptions {
  /** Default "round-robin". */
  strategy?: PlacementStrategy;
  /** Token for every server that has none of its own (else `DistConf.token`, else the process default). */
  token?: string;
  /** TLS for every server that has none of its own (else `DistConf.tls`, else the process default: `AS_TLS_CA`...). */
  tls?: ClientTlsOption;
  /** least-loaded: load figures older than this are refreshed (in the background once known), ms. Default 1000. */
  loadMaxAgeMs?: number;
  /** Deadline of one `getServerInfo` probe, ms. Default 2000. */
  probeTimeoutMs?: number;
  /**
   * A creation not answered within this is taken as an unreachable server and placed on the
   * next one (the first server is then asked to delete the object, in case it arrives late), ms.
   * Default 10 000.
   */
  createTimeoutMs?: number;
  /** How long a server that failed is skipped before it is tried again, ms. Default 5000. */
  deadRetryMs?: number;
  /**
   * Supervise the objects this group places: when an object's server dies, re-create it on
   * another live server of the group with the same oid and its last snapshot (kept by this
   * process, the placing client), and the proxy follows it. See `RestartPolicy`.
   */
  restart?: RestartPolicy;
}

/** What a group knows about one of its servers (`ServerGroup.status()`). */
export interface GroupServerStatus {
  host: string;
  port: number;
  /** False while the server is skipped after a failure. */
  alive: boolean;
  /** Objects this group created there. */
  placed: number;
  /** `size` and `pending` of the last `getServerInfo()`, and when it was read (`Date.now()`). */
  size?: number;
  pending?: number;
  infoAt?: number;
  /** Why the server was last marked dead. */
  error?: string;
}

/** The options with every default filled in. */
export type GroupSettings = Required<Omit<ServerGroupOptions, "token" | "tls" | "strategy" | "restart">> & { token?: string; tls?: ClientTlsOption; restart?: RestartPolicy };

/** A group's checked configuration. */
export interface GroupConfig {
  servers: readonly GroupServer[];
  strategy: PlacementStrategy;
  settings: GroupSettings;
}

const STRATEGIES: ReadonlySet<string> = new Set(["round-robin", "least-loaded"]);

/** Check what was given to `new ServerGroup(servers, opts)`; a TypeError names the first mistake. */
export function groupConfig(servers: ReadonlyArray<GroupServer | string>, opts: ServerGroupOptions): GroupConfig {
  if (!Array.isArray(servers) || servers.length === 0) throw new TypeError("ServerGroup needs at least one server");
  if (opts === null || typeof opts !== "object") throw new TypeError("ServerGroup options must be an object");
  const strategy = opts.strategy ?? "round-robin";
  if (!STRATEGIES.has(strategy)) throw new TypeError(`ServerGroup strategy must be "round-robin" or "least-loaded", not ${JSON.stringify(strategy)}`);
  const list = servers.map((s, i) => checkServer(typeof s === "string" ? parseServer(s) : s, i));
  const seen = new Set<string>();
  for (const s of list) {
    const k = `${s.host}:${s.port}`;
    if (seen.has(k)) throw new TypeError(`ServerGroup lists ${k} twice`);
    seen.add(k);
  }
  const settings: GroupSettings = {
    loadMaxAgeMs: positive(opts.loadMaxAgeMs, 1000, "loadMaxAgeMs"),
    probeTimeoutMs: positive(opts.probeTimeoutMs, 2000, "probeTimeoutMs"),
    createTimeoutMs: positive(opts.createTimeoutMs, 10_000, "createTimeoutMs"),
    deadRetryMs: positive(opts.deadRetryMs, 5000, "deadRetryMs"),
  };
  if (opts.token !== undefined) settings.token = opts.token;
  if (opts.tls !== undefined) settings.tls = opts.tls;
  if (opts.restart !== undefined) {
    checkRestartPolicy(opts.restart);
    settings.restart = opts.restart;
  }
  return { servers: Object.freeze(list.map((s) => Object.freeze({ ...s }))), strategy: strategy as PlacementStrategy, settings };
}

/** The servers of a servers list: one `host:port` per line (`[v6addr]:port`), blank lines and `#` comments ignored. */
export function parseServersList(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.replace(/#.*/, "").trim())
    .filter(Boolean);
}

function parseServer(s: string): GroupServer {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s.trim()) ?? /^([^:\s]+):(\d+)$/.exec(s.trim());
  if (!m) throw new TypeError(`ServerGroup: "${s}" is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

function checkServer(s: GroupServer, i: number): GroupServer {
  if (s === null || typeof s !== "object") throw new TypeError(`ServerGroup server ${i} must be { host, port } or "host:port"`);
  if (typeof s.host !== "string" || !s.host) throw new TypeError(`ServerGroup server ${i}: host must be a non-empty string`);
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) throw new TypeError(`ServerGroup server ${i}: port must be an integer in 1..65535, not ${s.port}`);
  if (s.token !== undefined && (typeof s.token !== "string" || !s.token)) throw new TypeError(`ServerGroup server ${i}: token must be a non-empty string`);
  const out: GroupServer = { host: s.host, port: s.port };
  if (s.token !== undefined) out.token = s.token;
  if (s.tls !== undefined) out.tls = s.tls;
  return out;
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !(v > 0)) throw new TypeError(`ServerGroup ${name} must be a positive number`);
  return v;
}
