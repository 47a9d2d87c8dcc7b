/**
 * A connection whose server is not chosen yet. A `ServerGroup` returns the proxy of an object
 * at once, before it knows which server will take the object; calls made through the proxy
 * meanwhile, and the waits for their results, queue here and go to the chosen server once it
 * is known. If no server takes the object, every queued request fails with why.
 *
 * Two pieces: `PendingTransport` queues requests until `resolve(transport)` or `fail(err)`;
 * `PendingConnection` is the `ServerConnection` over it, whose `address` names the chosen
 * server once placed (until then, the first candidate) and whose `addressPending` tells the
 * codec that a reference naming this server must wait for the choice.
 */
import { ServerConnection } from "../connection.ts";
import type { Request, Response } from "../../core/protocol.ts";
import type { Address, CallbackGrant, RequestOptions, Transport } from "../../core/transport.ts";
import { NeedsAwait } from "../ref-encode.ts";

interface Queued {
  req: Request;
  opts: RequestOptions | undefined;
  resolve(res: Promise<Response>): void;
  reject(err: unknown): void;
}

/**
 * A transport that holds requests, in order, until the transport they should go through is
 * known. Every request settles: forwarded on `resolve`, rejected on `fail` or `abort`.
 * A request's deadline (`timeoutMs`) starts when it is forwarded, as if it had been sent
 * then: the wait for the choice is bounded by the placement itself, not by the request.
 */
export class PendingTransport implements Transport {
  #queue: Queued[] = [];
  #target: Transport | undefined;
  #failure: { error: unknown } | undefined;
  /** Resolved (or rejected) with the choice, for encodings waiting for it. */
  #chosen: PromiseWithResolvers<void> | undefined;
  onBroken?: (err: Error) => void;

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#target) return this.#target.request(req, opts);
    if (this.#failure) return Promise.reject(this.#failure.error);
    return new Promise<Response>((resolve, reject) => {
      this.#queue.push({ req, opts, resolve, reject });
    });
  }

  /** The transport is known: send the queued requests through it, in the order they came. */
  resolve(target: Transport): void {
    if (this.#target || this.#failure) return;
    this.#target = target;
    this.#chosen?.resolve();
    for (const q of this.#drain()) q.resolve(target.request(q.req, q.opts));
  }

  /** No transport will come: every queued and later request rejects with `error`. */
  fail(error: unknown): void {
    if (this.#target || this.#failure) return;
    this.#failure = { error };
    this.#chosen?.promise.catch(() => {});
    this.#chosen?.reject(error);
    for (const q of this.#drain()) q.reject(error);
  }

  /**
   * Before the choice: fail every request with `reason`. After it, nothing: the chosen
   * transport is the process's shared connection to that server, not this one's to close.
   */
  abort(reason: Error): void {
    this.fail(reason);
  }

  /** The chosen server's callback route; before the choice, encoding waits for it. */
  callbackRoute(): CallbackGrant | undefined {
    if (this.#target) return this.#target.callbackRoute?.();
    if (this.#failure) return undefined;
    this.#chosen ??= Promise.withResolvers<void>();
    throw new NeedsAwait(this.#chosen.promise);
  }

  /** Requests waiting for the choice. */
  get queued(): number {
    return this.#queue.length;
  }

  #drain(): Queued[] {
    const q = this.#queue;
    this.#queue = [];
    return q;
  }
}

/**
 * The connection of a proxy whose server is still being chosen. Requests wait in a
 * `PendingTransport`; `place(conn)` sends them on to `conn` and makes this connection name
 * `conn`'s server, `fail(err)` rejects them. `addressPending` settles at the same moment.
 */
export class PendingConnection extends ServerConnection {
  readonly #pending: PendingTransport;
  readonly #choice = Promise.withResolvers<void>();
  #placed: ServerConnection | undefined;
  #settled = false;

  /** `tentative`: the first candidate, shown in `address`/`where` until the choice is made. */
  constructor(tentative: Address) {
    const pending = new PendingTransport();
    super(pending, tentative);
    this.#pending = pending;
    // Nobody may be waiting on the choice; a failure is reported through the requests.
    this.#choice.promise.catch(() => {});
  }

  override get addressPending(): Promise<void> | undefined {
    return this.#placed ? undefined : this.#choice.promise;
  }

  /** Why the chosen server's link is down, if it is. */
  override get broken(): Error | undefined {
    return this.#placed ? this.#placed.broken : super.broken;
  }

  /** The server is chosen: `conn` reaches it. Queued requests go there, in order. */
  place(conn: ServerConnection): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#placed = conn;
    this.moveTo(conn.address);
    this.#pending.resolve(conn.transport);
    this.#choice.resolve();
  }

  /** No server took the object: queued and later requests, and `addressPending`, reject with `error`. */
  fail(error: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#pending.fail(error);
    this.#choice.reject(error);
  }
}
