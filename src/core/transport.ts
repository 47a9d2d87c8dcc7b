/**
 * The one interface between the client core and a transport. A transport moves protocol
 * messages to one server and back; it knows nothing of proxies, results or the codec.
 * Implementations: `transports/ipc.ts` (a spawned child, Bun IPC) and `transports/grpc.ts`.
 */
import type { Request, Response } from "./protocol.ts";

/** Where a server is. Child servers have no port: they are reached through their parent. */
export interface Address {
  host: string;
  port?: number;
  /** Server id of a child server, reached over IPC by the process that spawned it. */
  child?: string;
  /**
   * Token for the loopback listener of a child server (with `port`): a capability handed out
   * with references to that child's objects, so independent servers on this machine can call it.
   */
  key?: string;
}

/** Per-request options. */
export interface RequestOptions {
  /** Abort the request (the server is told to cancel where it can). */
  signal?: AbortSignal;
  /** Deadline for the answer, in ms. */
  timeoutMs?: number;
}

/**
 * How a receiver calls back a callback this process sends: `via` its inbound link of that id
 * (a gRPC stream the sender opened), `at` a child server (relayed by parents), or — neither —
 * up its own IPC link to its parent.
 */
export type CallbackRoute = { via: string } | { at: Address } | Record<string, never>;

/** Where a value being encoded goes: the route receivers call back by, and the key of that link here. */
export interface CallbackGrant {
  route: CallbackRoute;
  /** `link:<id>` (a Callbacks stream), `child:<id>` (a child's IPC), `ipc` (this child's parent link), `local`. */
  key: string;
}

/** Moves requests to one server. Every returned promise settles, whatever happens. */
export interface Transport {
  /** Send a request; resolves with the answer, rejects with a typed error when the link breaks. */
  request(req: Request, opts?: RequestOptions): Promise<Response>;
  /** Tear the link down; every pending request rejects with `reason`. */
  abort(reason: Error): void;
  /** Set by the owner: called once when the link breaks (peer died, disconnected). */
  onBroken?: (err: Error) => void;
  /**
   * How this server can call back callbacks sent over this transport (opening what that needs,
   * e.g. the gRPC Callbacks stream); undefined where callbacks cannot go.
   */
  callbackRoute?(): CallbackGrant | undefined;
}
