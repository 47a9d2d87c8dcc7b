/**
 * Placement: spread objects over a list of independent agent servers without arithmetic in
 * user code. A `ServerGroup` is given to `toDist` instead of one `{ host, port }`; each
 * creation goes to the server its strategy picks:
 *
 * - `"round-robin"` (default): the servers in turn. No extra requests.
 * - `"least-loaded"`: the server with the fewest objects plus async calls in flight, from
 *   each server's `getServerInfo()` (`size + pending`), plus what this group placed there
 *   since that figure was read. Figures older than `loadMaxAgeMs` are refreshed in the
 *   background (the one placement that finds none at all waits for the first probe).
 *
 * A server that does not answer a creation (UNAVAILABLE, or no answer within
 * `createTimeoutMs`) is marked dead for `deadRetryMs` and the object is created on the next
 * choice instead; only when every server of the group failed does the creation fail, with an
 * `AgentServerNotAliveError` that names each server and why. The proxy is returned at once,
 * as with any `toDist`; calls made before the object exists wait for it and go to the server
 * that took it.
 */
import { DEFAULTS } from "../core/defaults.ts";
import type { ServerConnection } from "./connection.ts";
import { ServerConnection as Connection } from "./connection.ts";
import { connectionFor, type GrpcConnectOptions } from "./connections.ts";
import type { DistConf } from "./distributable.ts";
import { AgentCreationError, AgentServerError, AgentServerNotAliveError, DeadlineExceededError } from "../core/errors.ts";
import type { ServerInfo } from "../core/protocol.ts";
import { makeRemote, type Remote, type RemoteState } from "./proxy.ts";
import { decodeFrom, encodeArgsWhenReady, NeedsAwait } from "./refs.ts";
import { classInfo, type ClassEntry } from "../core/registry.ts";
import { DEFAULT_RETRY } from "./retry.ts";
import type { ClientTlsOption } from "../core/tls.ts";
import type { Address, Transport } from "../core/transport.ts";

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

interface Member {
  readonly addr: GroupServer;
  readonly key: string;
  placed: number;
  /** `placed` when the last load probe started: placements after it are not in `info`. */
  placedAtProbe: number;
  info?: { size: number; pending: number; at: number };
  deadUntil: number;
  error?: string;
}

const STRATEGIES: ReadonlySet<string> = new Set(["round-robin", "least-loaded"]);

/**
 * A list of agent servers that `toDist` spreads objects over.
 *
 * @example
 * const group = new ServerGroup([{ host: "10.0.0.2", port: 12310 }, { host: "10.0.0.3", port: 12310 }],
 *   { strategy: "least-loaded", token: process.env.AS_SERVER_TOKEN });
 * const agents = names.map((n) => WebAgent.toDist(group, n)); // or new WebAgent(n).toDist(group)
 * console.log(group.status()); // how many objects went where
 */
export class ServerGroup {
  /** The servers, in the order given. */
  readonly servers: readonly GroupServer[];
  readonly strategy: PlacementStrategy;
  readonly #members: Member[];
  readonly #opts: Required<Omit<ServerGroupOptions, "token" | "tls" | "strategy">> & { token?: string; tls?: ClientTlsOption };
  #next = 0;
  #probing: Promise<void> | undefined;

  constructor(servers: ReadonlyArray<GroupServer | string>, opts: ServerGroupOptions = {}) {
    if (!Array.isArray(servers) || servers.length === 0) throw new TypeError("ServerGroup needs at least one server");
    if (opts === null || typeof opts !== "object") throw new TypeError("ServerGroup options must be an object");
    const strategy = opts.strategy ?? "round-robin";
    if (!STRATEGIES.has(strategy)) throw new TypeError(`ServerGroup strategy must be "round-robin" or "least-loaded", not ${JSON.stringify(strategy)}`);
    this.strategy = strategy;
    const list = servers.map((s, i) => checkServer(typeof s === "string" ? parseServer(s) : s, i));
    const seen = new Set<string>();
    for (const s of list) {
      const k = `${s.host}:${s.port}`;
      if (seen.has(k)) throw new TypeError(`ServerGroup lists ${k} twice`);
      seen.add(k);
    }
    this.servers = Object.freeze(list.map((s) => Object.freeze({ ...s })));
    this.#members = this.servers.map((addr) => ({ addr, key: `${addr.host}:${addr.port}`, placed: 0, placedAtProbe: 0, deadUntil: 0 }));
    this.#opts = {
      loadMaxAgeMs: positive(opts.loadMaxAgeMs, 1000, "loadMaxAgeMs"),
      probeTimeoutMs: positive(opts.probeTimeoutMs, 2000, "probeTimeoutMs"),
      createTimeoutMs: positive(opts.createTimeoutMs, 10_000, "createTimeoutMs"),
      deadRetryMs: positive(opts.deadRetryMs, 5000, "deadRetryMs"),
    };
    if (opts.token !== undefined) this.#opts.token = opts.token;
    if (opts.tls !== undefined) this.#opts.tls = opts.tls;
  }

  /**
   * A group from a servers list: one `host:port` per line (`[v6addr]:port` for IPv6), blank
   * lines and `#` comments ignored — the file `examples/deploy/launch-workers.sh` writes.
   */
  static parse(text: string, opts?: ServerGroupOptions): ServerGroup {
    const servers = text
      .split("\n")
      .map((l) => l.replace(/#.*/, "").trim())
      .filter(Boolean);
    return new ServerGroup(servers, opts);
  }

  /** `ServerGroup.parse` of a file. */
  static async fromFile(path: string, opts?: ServerGroupOptions): Promise<ServerGroup> {
    return ServerGroup.parse(await Bun.file(path).text(), opts);
  }

  /** What the group knows about each server: liveness, placements, last load figures. */
  status(): GroupServerStatus[] {
    const now = Date.now();
    return this.#members.map((m) => {
      const s: GroupServerStatus = { host: m.addr.host, port: m.addr.port, alive: m.deadUntil <= now, placed: m.placed };
      if (m.info) Object.assign(s, { size: m.info.size, pending: m.info.pending, infoAt: m.info.at });
      if (m.error !== undefined && m.deadUntil > now) s.error = m.error;
      return s;
    });
  }

  /**
   * Ask every server for its load now (`getServerInfo`, answered at once by the server),
   * those marked dead included: one that answers is alive again, one that does not answer
   * within `probeTimeoutMs` is marked dead. Resolves with `status()`.
   */
  async refresh(): Promise<GroupServerStatus[]> {
    await (this.#probing ?? Promise.resolve());
    await this.#probeAll(true);
    return this.status();
  }

  /**
   * The server the strategy picks for the next `count` objects (counted as placed there),
   * for code that places objects in bulk itself (e.g. one request creating many). Skips dead
   * servers; rejects with AgentServerNotAliveError when every server is marked dead.
   */
  async pick(count = 1): Promise<GroupServer> {
    if (!Number.isInteger(count) || count < 1) throw new TypeError("ServerGroup.pick(count): count must be a positive integer");
    const i = await this.#pick(new Set());
    if (i === undefined) {
      const why = this.#members.map((m) => `${m.key} (${m.error ?? "marked dead"})`).join("; ");
      throw new AgentServerNotAliveError(`no server of the group is alive: ${why}`, { host: this.#members[0]!.addr.host, port: this.#members[0]!.addr.port });
    }
    this.#members[i]!.placed += count - 1;
    return this.servers[i]!;
  }

  /**
   * Create `entry` with `args` and id `oid` on the server the strategy picks; returns its
   * proxy at once. Called by `toDist` for a group target.
   * @internal
   */
  place<T>(entry: ClassEntry, args: unknown[], oid: string, conf: DistConf): Remote<T> {
    const payload = encodeArgsWhenReady(args, "net").catch((e) => {
      throw new AgentCreationError(`cannot send constructor arguments of ${entry.name}: ${(e as Error).message}`, { code: "INVALID_ARGUMENT", cause: e });
    });
    const chosen = Promise.withResolvers<ServerConnection>();
    chosen.promise.catch(() => {});
    // least-loaded with no figures yet: the choice waits for the first probe.
    const first = this.strategy === "least-loaded" && this.#members.every((m) => !m.info) ? undefined : this.#pickNow(new Set());
    const tentative = first === undefined ? this.#members[0]! : this.#members[first]!;
    const placed = new PlacedConnection(chosen.promise, { host: tentative.addr.host, port: tentative.addr.port });
    const st: RemoteState = {
      oid,
      conn: placed,
      ready: Promise.resolve(),
      info: classInfo(entry.cls),
      created: true,
      retry: conf.retryStrategy ?? DEFAULT_RETRY,
      maxWaitMs: (conf.maxTimeoutSeconds ?? DEFAULTS.maxTimeoutSeconds) * 1000,
      host: tentative.addr.host,
      port: tentative.addr.port,
    };
    st.ready = this.#create(entry.name, oid, payload, first, conf, st).then(
      (conn) => chosen.resolve(conn),
      (e: unknown) => {
        chosen.reject(e);
        throw e;
      },
    );
    return makeRemote<T>(st);
  }

  /** Try servers in the strategy's order until one creates the object. */
  async #create(cls: string, oid: string, payload: Promise<Uint8Array>, first: number | undefined, conf: DistConf, st: RemoteState): Promise<ServerConnection> {
    let args: Uint8Array;
    try {
      args = await payload;
    } catch (e) {
      if (first !== undefined) this.#members[first]!.placed--;
      throw e;
    }
    const tried = new Set<number>();
    const failures: string[] = [];
    let i = first;
    for (;;) {
      if (i === undefined) i = await this.#pick(tried);
      if (i === undefined) {
        const why = failures.length ? failures.join("; ") : this.#members.map((m) => `${m.key} (${m.error ?? "marked dead"})`).join("; ");
        throw new AgentServerNotAliveError(`no server of the group could create ${cls} ${oid}: ${why}`, { host: this.#members[0]!.addr.host, port: this.#members[0]!.addr.port });
      }
      const m = this.#members[i]!;
      tried.add(i);
      const conn = this.#connection(m, conf);
      st.host = m.addr.host;
      st.port = m.addr.port;
      // The time limit is our own timer, not a gRPC deadline: requests without one are
      // batched by the transport (many creations per RPC), which is what makes bulk placement fast.
      const created = conn.create(oid, cls, args);
      try {
        await withinMs(created, this.#opts.createTimeoutMs, () => new DeadlineExceededError(`no answer to the creation of ${cls} ${oid} within ${this.#opts.createTimeoutMs} ms`, conn.where));
        st.conn = conn;
        return conn;
      } catch (e) {
        m.placed--;
        if (!unreachable(e)) throw e;
        const code = (e as AgentServerError).code;
        // A creation that timed out may still land: then ask that server to drop it.
        created.then(() => conn.send({ t: "delete", oid }), () => {}).catch(() => {});
        this.#markDead(m, `${code}: ${(e as Error).message}`);
        failures.push(`${m.key} (${code})`);
        i = undefined;
      }
    }
  }

  /** The process's connection to a member, with its token and TLS (own, else the group's, else the DistConf's). */
  #connection(m: Member, conf: DistConf | undefined): ServerConnection {
    const opts: GrpcConnectOptions = {};
    const token = m.addr.token ?? this.#opts.token ?? conf?.token;
    const tls = m.addr.tls ?? this.#opts.tls ?? conf?.tls;
    if (token !== undefined) opts.token = token;
    if (tls !== undefined) opts.tls = tls;
    return connectionFor({ host: m.addr.host, port: m.addr.port }, opts);
  }

  #markDead(m: Member, why: string): void {
    m.deadUntil = Date.now() + this.#opts.deadRetryMs;
    m.error = why;
    m.info = undefined;
  }

  /** The next server, waiting for load figures when least-loaded has none yet. */
  async #pick(tried: Set<number>): Promise<number | undefined> {
    if (this.strategy === "least-loaded" && this.#members.every((m) => !m.info)) await this.#probe();
    return this.#pickNow(tried);
  }

  /** The next server from what is known now (`undefined`: least-loaded must probe first, or none is left). */
  #pickNow(tried: Set<number>): number | undefined {
    const now = Date.now();
    const n = this.#members.length;
    const ok = (i: number) => !tried.has(i) && this.#members[i]!.deadUntil <= now;
    let pick: number | undefined;
    if (this.strategy === "round-robin") {
      for (let k = 0; k < n; k++) {
        const i = (this.#next + k) % n;
        if (ok(i)) {
          pick = i;
          this.#next = i + 1;
          break;
        }
      }
    } else {
      // A server with no figures (its probe failed, or it just came back) counts what this
      // group placed there since; the creation itself then shows what is wrong with it.
      let best = Infinity;
      for (let k = 0; k < n; k++) {
        // Ties go to the servers in turn, not always to the first.
        const i = (this.#next + k) % n;
        if (!ok(i)) continue;
        const m = this.#members[i]!;
        const load = (m.info ? m.info.size + m.info.pending : 0) + m.placed - m.placedAtProbe;
        if (load < best) {
          best = load;
          pick = i;
        }
      }
      if (pick !== undefined) this.#next = pick + 1;
      const stale = (m: Member) => m.deadUntil <= now && (!m.info || now - m.info.at > this.#opts.loadMaxAgeMs);
      if (this.#members.some(stale)) void this.#probe().catch(() => {});
    }
    if (pick !== undefined) this.#members[pick]!.placed++;
    return pick;
  }

  /** One probe of every server at a time; concurrent callers share it. */
  #probe(): Promise<void> {
    this.#probing ??= this.#probeAll().finally(() => {
      this.#probing = undefined;
    });
    return this.#probing;
  }

  async #probeAll(includeDead = false): Promise<void> {
    const now = Date.now();
    await Promise.all(
      this.#members.map(async (m) => {
        // A dead server is left alone until its retry time (unless asked: refresh()).
        if (m.deadUntil > now && !includeDead) return;
        const startPlaced = m.placed;
        try {
          const conn = this.#connection(m, undefined);
          const info = decodeFrom(await conn.value({ t: "info" }, { timeoutMs: this.#opts.probeTimeoutMs })) as Partial<ServerInfo> | null;
          if (typeof info?.size !== "number" || typeof info.pending !== "number") throw new TypeError(`${m.key} sent a malformed server info`);
          m.info = { size: info.size, pending: info.pending, at: Date.now() };
          m.placedAtProbe = startPlaced;
          m.deadUntil = 0;
          m.error = undefined;
        } catch (e) {
          if (unreachable(e)) this.#markDead(m, `${(e as AgentServerError).code}: ${(e as Error).message}`);
          else m.error = (e as Error).message;
        }
      }),
    );
  }
}

/**
 * The connection of a proxy whose server is still being chosen: requests wait for the
 * choice and go to the chosen server. Its address is the chosen server's once known; before
 * that it names the first candidate, and a reference encoded in the meantime (the result of
 * a call made before the object existed, handed on at once) waits for the choice instead of
 * naming a server that may turn out dead: the codec serialises references with JSON, and this
 * address's `toJSON` asks the encoder to wait (NeedsAwait), as a not-yet-ready value does.
 */
class PlacedConnection extends Connection {
  constructor(chosen: Promise<ServerConnection>, tentative: Address) {
    const box: { target?: ServerConnection } = {};
    const transport: Transport = {
      request: (req, opts) => (box.target ? box.target.transport.request(req, opts) : chosen.then((c) => c.transport.request(req, opts))),
      abort() {},
    };
    super(transport, tentative);
    chosen.then(
      (c) => (box.target = c),
      () => {},
    );
    const pending: Address = {
      ...tentative,
      toJSON: () => {
        if (box.target) return box.target.address;
        throw new NeedsAwait(chosen);
      },
    } as Address;
    const where = this.where;
    Object.defineProperty(this, "address", { get: () => box.target?.address ?? pending });
    Object.defineProperty(this, "where", { get: () => box.target?.where ?? where });
  }
}

/** `p`, or the error `timeout()` makes if `p` has not settled within `ms`. */
function withinMs<T>(p: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timeout()), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function unreachable(e: unknown): boolean {
  const code = e instanceof AgentServerError ? e.code : undefined;
  return code === "UNAVAILABLE" || code === "DEADLINE_EXCEEDED";
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
