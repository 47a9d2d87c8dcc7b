/**
 * Every server this process talks to, one `ServerConnection` each (so one gRPC channel per
 * server, shared by all proxies). Child servers are registered by the process that spawned
 * them; gRPC connections are made on first use, loading grpc-js only then, so a child server
 * that never talks gRPC never loads it.
 */
import { ServerConnection } from "./connection.ts";
import { processLimits } from "./refs.ts";
import { AgentServerNotAliveError } from "./errors.ts";
import type { Request, Response } from "./protocol.ts";
import { clientTls, envTls, type ClientTls, type ClientTlsOption } from "./tls.ts";
import type { Address, RequestOptions, Transport } from "./transport.ts";

const byKey = new Map<string, ServerConnection>();
/** Tokens to present to servers, by "host:port"; `*` is the default for any server. */
const tokens = new Map<string, string>();
/** TLS to use with servers, by "host:port" (`null`: plaintext); `*` is the default for any server. */
const tlsTable = new Map<string, ClientTls | null>();

/** Options for a gRPC connection. */
export interface GrpcConnectOptions {
  token?: string;
  /** Largest message each way, bytes. */
  maxMessageBytes?: number;
  /** TLS for this server (remembered for later connections to it, like the token). */
  tls?: ClientTlsOption;
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

/** Token for a server: its own, else the default (`"*"`), else `AS_CLIENT_TOKEN`/`AS_SERVER_TOKEN`. */
export function tokenFor(host: string, port: number): string | undefined {
  return tokens.get(`${host}:${port}`) ?? tokens.get("*") ?? process.env.AS_CLIENT_TOKEN ?? process.env.AS_SERVER_TOKEN;
}

/**
 * Remember how to reach `host:port` (or every server, with `"*"`): TLS material, `true` (TLS
 * against `AS_TLS_CA` or the system roots), `false` (plaintext), or `undefined` to forget.
 * A connection made with other settings is replaced on next use.
 */
export function setTls(hostPort: string, tls: ClientTlsOption | undefined): void {
  if (tls === undefined) {
    tlsTable.delete(hostPort);
    return;
  }
  const next = clientTls(tls) ?? null;
  const prev = tlsTable.get(hostPort);
  // The same settings again keep their object: connections made with them stay valid.
  if (prev === undefined || !sameTls(prev, next)) tlsTable.set(hostPort, next);
}

function sameTls(a: ClientTls | null, b: ClientTls | null): boolean {
  if (a === null || b === null) return a === b;
  const eq = (x?: Buffer, y?: Buffer) => (x === undefined ? y === undefined : y !== undefined && x.equals(y));
  return eq(a.ca, b.ca) && eq(a.cert, b.cert) && eq(a.key, b.key);
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

let envDefault: { tls: ClientTls | undefined } | undefined;
function processTls(): ClientTls | undefined {
  envDefault ??= { tls: envTls() };
  return envDefault.tls;
}

/** Register the connection of a child server this process spawned (or can route to). */
export function registerConnection(conn: ServerConnection): void {
  byKey.set(addressKey(conn.address), conn);
}

/** Forget a connection (its server stopped). */
export function forgetConnection(conn: ServerConnection): void {
  const k = addressKey(conn.address);
  if (byKey.get(k) === conn) byKey.delete(k);
}

/** Hook for child addresses this process did not spawn (set by a child server: route via parent). */
let childRouter: ((a: Address) => ServerConnection | undefined) | undefined;

/** Install how this process reaches child servers it did not spawn itself. */
export function setChildRouter(r: typeof childRouter): void {
  childRouter = r;
}

/** The connection for an address, creating a gRPC one on first use. */
export function connectionFor(a: Address, opts: GrpcConnectOptions = {}): ServerConnection {
  if (a.child) {
    // A child server: over IPC if this process spawned it, through our parent if we are a
    // child ourselves, else through the child's loopback listener when the address has one.
    const own = byKey.get(addressKey(a));
    if (own && !own.broken) return own;
    const routed = childRouter?.(a);
    if (routed) return routed;
    if (a.port !== undefined) {
      // A child's listener: loopback, plaintext, guarded by its own random token.
      return grpcConnection({ host: a.host, port: a.port }, a.key === undefined ? { ...opts, tls: false } : { ...opts, token: a.key, tls: false });
    }
    return new ServerConnection(deadTransport(new AgentServerNotAliveError(`child server ${a.child} is not reachable from this process`, { host: `child:${a.child}` })), a);
  }
  if (a.port === undefined) throw new TypeError(`address ${a.host} has no port`);
  return grpcConnection({ host: a.host, port: a.port }, opts);
}

function grpcConnection(a: Address & { port: number }, opts: GrpcConnectOptions): ServerConnection {
  const key = `${a.host}:${a.port}`;
  if (opts.token !== undefined) setToken(key, opts.token);
  if (opts.tls !== undefined) setTls(key, opts.tls);
  const tls = tlsFor(a.host, a.port);
  const hit = byKey.get(key);
  if (hit && !hit.broken && (hit.transport as Partial<LazyGrpcTransport>).tls === tls) return hit;
  const conn = new ServerConnection(new LazyGrpcTransport(a.host, a.port, opts, tls), { host: a.host, port: a.port });
  byKey.set(key, conn);
  return conn;
}

/** Close every gRPC channel this process opened (tests, shutdown). */
export async function closeAllConnections(): Promise<void> {
  const all = [...byKey.values()];
  byKey.clear();
  for (const c of all) if (!c.address.child) c.transport.abort(new AgentServerNotAliveError("connection closed", c.where));
}

function deadTransport(err: Error): Transport {
  return { request: () => Promise.reject(err), abort() {} };
}

/** Defers loading grpc-js until the first request. */
class LazyGrpcTransport implements Transport {
  #inner: Promise<Transport> | undefined;
  #ready: Transport | undefined;
  #aborted: Error | undefined;
  onBroken?: (err: Error) => void;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly opts: GrpcConnectOptions,
    /** The TLS this connection was made with (undefined: plaintext). */
    readonly tls: ClientTls | undefined,
  ) {}

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#ready) return this.#ready.request(req, opts);
    if (this.#aborted) return Promise.reject(this.#aborted);
    this.#inner ??= import("./transports/grpc.ts").then((m) => {
      const t = m.createGrpcTransport(this.host, this.port, {
        token: () => tokenFor(this.host, this.port),
        maxMessageBytes: this.opts.maxMessageBytes ?? processLimits().maxMessageBytes,
        tls: this.tls,
      });
      t.onBroken = (e) => this.onBroken?.(e);
      this.#ready = t;
      return t;
    });
    return this.#inner.then((t) => t.request(req, opts));
  }

  abort(reason: Error): void {
    this.#aborted = reason;
    if (this.#ready) this.#ready.abort(reason);
    else this.#inner?.then((t) => t.abort(reason));
  }
}
