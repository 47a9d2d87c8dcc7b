/**
 * Every server this process talks to, one `ServerConnection` each (so one gRPC channel per
 * server, shared by all proxies). Child servers are registered by the process that spawned
 * them; gRPC connections are made on first use, loading grpc-js only then, so a child server
 * that never talks gRPC never loads it.
 */
import { ServerConnection } from "./connection.ts";
import { runtime, type DialPolicy } from "./runtime.ts";
import { AgentServerNotAliveError, PermissionDeniedError } from "../core/errors.ts";
import type { Request, Response } from "../core/protocol.ts";
import { clientTls, envTls, type ClientTls, type ClientTlsOption } from "../core/tls.ts";
import type { Address, CallbackGrant, RequestOptions, Transport } from "../core/transport.ts";
import { NeedsAwait } from "./ref-encode.ts";

// State lives in the runtime object (runtime.ts): children, connections (LRU, by host:port plus
// the credentials presented, so two proxies with different tokens never share one), the
// tokens and TLS configured by the user per peer (decoding a value never writes them).
const children = runtime.children;
const byKey = runtime.connections;
const tokens = runtime.tokens;
const tlsTable = runtime.tls;

/** Most gRPC connections kept in the table; past it the least recently used idle ones are closed. */
export const MAX_CONNECTIONS = 1024;

/** Options for a gRPC connection. */
export interface GrpcConnectOptions {
  token?: string;
  /** Largest message each way, bytes. */
  maxMessageBytes?: number;
  /** TLS for this server (remembered as this peer's TLS for references to it, like the token). */
  tls?: ClientTlsOption;
  /**
   * The address came from a value this process decoded (a reference), not from its own
   * configuration: it is subject to the dial policy, and it configures nothing.
   */
  fromValue?: boolean;
}

/** A stable key for an address. */
export function addressKey(a: Address): string {
  return a.child ? `child:${a.child}` : `${a.host}:${a.port}`;
}

/** Remember the token to present to `host:port` (or to every server with `"*"`). */
export function setToken(hostPort: string, token: string | undefined): void {
  if (token === undefined) tokens.delete(hostPort);
  else tokens.set(hostPort, token);
}

/**
 * Token for a server: the one configured for it, else the default (`"*"`), else
 * `AS_CLIENT_TOKEN`. A process that serves never falls back to `AS_SERVER_TOKEN` (its own
 * secret must not go to an address it was handed); a plain client process may, as the token
 * of the servers it talks to.
 */
export function tokenFor(host: string, port: number): string | undefined {
  return tokens.get(`${host}:${port}`) ?? tokens.get("*") ?? process.env.AS_CLIENT_TOKEN ?? (runtime.hostsServer ? undefined : process.env.AS_SERVER_TOKEN);
}

/**
 * Remember how to reach `host:port` (or every server, with `"*"`): TLS material, `true` (TLS
 * against `AS_TLS_CA` or the system roots), `false` (plaintext), or `undefined` to forget.
 */
export function setTls(hostPort: string, tls: ClientTlsOption | undefined): void {
  if (tls === undefined) {
    tlsTable.delete(hostPort);
    return;
  }
  tlsTable.set(hostPort, clientTls(tls) ?? null);
}

/**
 * TLS for a server: its own setting, else the default (`"*"`), else the environment
 * (`AS_TLS_CA`, `AS_TLS_CERT`/`AS_TLS_KEY`, read once per process); undefined for plaintext.
 */
export function tlsFor(host: string, port: number): ClientTls | undefined {
  for (const k of [`${host}:${port}`, "*"]) {
    const own = tlsTable.get(k);
    if (own !== undefined) return own ?? undefined; // null: plaintext, on purpose
  }
  return processTls();
}

function processTls(): ClientTls | undefined {
  runtime.envTls ??= { tls: envTls() };
  return runtime.envTls.tls;
}

/**
 * A server running in this process (`owner`) sets its dial policy at start (undefined: any
 * peer) and clears it when it stops. While servers run, a peer named in a value is dialled if
 * any of their policies allows it; with none running, this process dials what it is handed.
 */
export function setDialPolicy(owner: object, p: DialPolicy | undefined): void {
  runtime.dialPolicies.set(owner, p);
}

/** The server `owner` stopped: its dial policy no longer applies. */
export function clearDialPolicy(owner: object): void {
  runtime.dialPolicies.delete(owner);
}

/**
 * The policy for an allow-list: `"any"`/`"*"` allows everything; otherwise loopback peers
 * (this machine's other servers and child listeners) and each `host` or `host:port` listed.
 */
export function allowListPolicy(allow: readonly string[] | "any" | undefined): DialPolicy | undefined {
  if (allow === "any" || allow?.includes("any") || allow?.includes("*")) return undefined;
  const hosts = new Set<string>();
  const exact = new Set<string>();
  for (const a of allow ?? []) {
    const m = /^(\[[^\]]+\]|[^:]+|[0-9a-fA-F:]+)(?::(\d+))?$/.exec(a.trim());
    if (!m) continue;
    const h = m[1]!.replace(/^\[|\]$/g, "").toLowerCase();
    if (m[2] === undefined) hosts.add(h);
    else exact.add(`${h}:${m[2]}`);
  }
  return (host, port) => {
    const h = host.replace(/^\[|\]$/g, "").toLowerCase();
    return isLoopback(h) || hosts.has(h) || exact.has(`${h}:${port}`);
  };
}

function isLoopback(h: string): boolean {
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Register the connection of a child server this process spawned (or can route to). */
export function registerConnection(conn: ServerConnection): void {
  children.set(addressKey(conn.address), conn);
}

/** Forget a connection (its server stopped). */
export function forgetConnection(conn: ServerConnection): void {
  const k = addressKey(conn.address);
  if (children.get(k) === conn) children.delete(k);
}

/** gRPC connections in the table (for bounds and leak checks). */
export function connectionCount(): number {
  return byKey.size;
}

/** The connection for an address, creating a gRPC one on first use. */
export function connectionFor(a: Address, opts: GrpcConnectOptions = {}): ServerConnection {
  if (a.child) {
    // A child server: over IPC if this process spawned it, through our parent if we are a
    // child ourselves, else through the child's loopback listener when the address has one.
    const own = children.get(addressKey(a));
    if (own && !own.broken) return own;
    const routed = runtime.parent?.route(a);
    if (routed) return routed;
    if (a.port !== undefined) {
      // A child's listener: loopback, plaintext, guarded by the key the reference carries —
      // a credential scoped to that listener, never remembered for the address.
      if (opts.fromValue && !runtime.mayDial(a.host, a.port)) return refused(a);
      return grpcConnection({ host: a.host, port: a.port }, a.key, undefined, opts);
    }
    return new ServerConnection(deadTransport(new AgentServerNotAliveError(`child server ${a.child} is not reachable from this process`, { host: `child:${a.child}` })), a);
  }
  if (a.port === undefined) throw new TypeError(`address ${a.host} has no port`);
  if (opts.fromValue) {
    if (!runtime.mayDial(a.host, a.port)) return refused(a);
    return grpcConnection({ host: a.host, port: a.port }, tokenFor(a.host, a.port), tlsFor(a.host, a.port), opts);
  }
  // The user's own configuration: remembered for this peer (references to it decoded later).
  const hp = `${a.host}:${a.port}`;
  if (opts.token !== undefined) setToken(hp, opts.token);
  if (opts.tls !== undefined) setTls(hp, opts.tls);
  const token = opts.token ?? tokenFor(a.host, a.port);
  const tls = opts.tls === undefined ? tlsFor(a.host, a.port) : clientTls(opts.tls);
  return grpcConnection({ host: a.host, port: a.port }, token, tls, opts);
}

/** A connection that fails every request PERMISSION_DENIED: the dial policy refused the peer. */
function refused(a: Address): ServerConnection {
  const at = a.port === undefined ? a.host : `${a.host}:${a.port}`;
  const err = new PermissionDeniedError(`this server may not dial ${at}: not an allowed peer (see allowPeers / --allow-peers)`, { host: a.host, port: a.port });
  return new ServerConnection(deadTransport(err), { host: a.host, ...(a.port === undefined ? {} : { port: a.port }) });
}

function grpcConnection(a: Address & { port: number }, token: string | undefined, tls: ClientTls | undefined, opts: GrpcConnectOptions): ServerConnection {
  const key = `${a.host}:${a.port}#${token === undefined ? "-" : Bun.hash(token).toString(36)}#${tlsKey(tls)}`;
  const hit = byKey.get(key);
  if (hit && !hit.broken) {
    // Most recently used last.
    byKey.delete(key);
    byKey.set(key, hit);
    return hit;
  }
  const conn = new ServerConnection(new LazyGrpcTransport(a.host, a.port, opts, tls, token), { host: a.host, port: a.port });
  byKey.set(key, conn);
  if (byKey.size > MAX_CONNECTIONS) trim();
  return conn;
}

/** Close least recently used idle connections until the table is back under its bound. */
function trim(): void {
  for (const [k, c] of byKey) {
    if (byKey.size <= MAX_CONNECTIONS) return;
    const t = c.transport as LazyGrpcTransport;
    if (t.pending > 0) continue;
    byKey.delete(k);
    // Proxies still holding it reconnect on their next call.
    t.closeIdle();
  }
}

function tlsKey(t: ClientTls | undefined): string {
  if (!t) return "plain";
  const h = (b?: Buffer) => (b ? Bun.hash(b).toString(36) : "-");
  return `${h(t.ca)}.${h(t.cert)}.${h(t.key)}`;
}

/** Close every gRPC channel this process opened (tests, shutdown). */
export async function closeAllConnections(): Promise<void> {
  const all = [...byKey.values()];
  byKey.clear();
  for (const c of all) c.transport.abort(new AgentServerNotAliveError("connection closed", c.where));
}

function deadTransport(err: Error): Transport {
  return { request: () => Promise.reject(err), abort() {} };
}

/**
 * Defers loading grpc-js until the first request, and lets an idle connection be closed
 * (table bound) and opened again by its next request.
 */
class LazyGrpcTransport implements Transport {
  #inner: Promise<Transport> | undefined;
  #ready: Transport | undefined;
  #aborted: Error | undefined;
  /** Requests in flight. */
  pending = 0;
  onBroken?: (err: Error) => void;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly opts: GrpcConnectOptions,
    /** The TLS this connection was made with (undefined: plaintext). */
    readonly tls: ClientTls | undefined,
    /** The token this connection presents (undefined: none). */
    readonly token: string | undefined,
  ) {}

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#aborted) return Promise.reject(this.#aborted);
    this.pending++;
    const done = <T>(v: T): T => {
      this.pending--;
      return v;
    };
    const fail = (e: unknown): never => {
      this.pending--;
      throw e;
    };
    if (this.#ready) return this.#ready.request(req, opts).then(done, fail);
    return this.#load().then((t) => t.request(req, opts)).then(done, fail);
  }

  #load(): Promise<Transport> {
    return (this.#inner ??= import("./transports/grpc.ts").then((m) => {
      const token = this.token;
      const t = m.createGrpcTransport(this.host, this.port, {
        token: () => token,
        maxMessageBytes: this.opts.maxMessageBytes ?? runtime.limits.maxMessageBytes,
        tls: this.tls,
      });
      t.onBroken = (e) => this.onBroken?.(e);
      this.#ready = t;
      return t;
    }));
  }

  /** The loaded transport's callback route; before it is loaded, load it and encode again. */
  callbackRoute(): CallbackGrant | undefined {
    if (this.#ready) return this.#ready.callbackRoute?.();
    throw new NeedsAwait(this.#load());
  }

  /** Close the channel if nothing is in flight; the next request opens a new one. */
  closeIdle(): void {
    const t = this.#ready;
    if (!t || this.pending > 0) return;
    this.#ready = undefined;
    this.#inner = undefined;
    t.onBroken = undefined;
    t.abort(new AgentServerNotAliveError("connection closed (idle, connection table full)", { host: this.host, port: this.port }));
  }

  abort(reason: Error): void {
    this.#aborted = reason;
    if (this.#ready) this.#ready.abort(reason);
    else this.#inner?.then((t) => t.abort(reason));
  }
}
