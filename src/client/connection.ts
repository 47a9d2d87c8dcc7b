/**
 * The client core for one server: typed requests over whichever transport reaches it, with
 * answers turned into values or errors of the one error tree. Proxies, AsyncResults and
 * `RpcClient` all talk to servers through this class.
 */
import { AgentCreationError, AgentServerError, CodecError, errorFromWire } from "../core/errors.ts";
import type { Request, Response } from "../core/protocol.ts";
import type { Address, RequestOptions, Transport } from "../core/transport.ts";
import { withTrace } from "../core/trace-context.ts";
import type { Frame } from "../core/split-frame.ts";

/** One server as seen from this process. */
export class ServerConnection {
  readonly transport: Transport;
  #address: Address;
  #where: { host: string; port: number | undefined };
  #broken: Error | undefined;

  constructor(transport: Transport, address: Address) {
    this.transport = transport;
    this.#address = address;
    this.#where = whereOf(address);
    const prev = transport.onBroken;
    transport.onBroken = (err) => {
      this.#broken = err;
      prev?.(err);
    };
  }

  /** Where the server is. */
  get address(): Address {
    return this.#address;
  }

  /** Host/port shown in errors (`"child:<id>"` for child servers). */
  get where(): { host: string; port: number | undefined } {
    return this.#where;
  }

  /**
   * `undefined` once `address` is final, which for most connections is from the start. A
   * connection whose server is still being chosen (a `ServerGroup` placing an object) returns
   * a promise that resolves once `address` names the chosen server, or rejects with why no
   * server took the object: a reference naming this server must wait for it.
   */
  get addressPending(): Promise<void> | undefined {
    return undefined;
  }

  /** Name the server finally chosen (for subclasses whose server is chosen after they are made). */
  protected moveTo(address: Address): void {
    this.#address = address;
    this.#where = whereOf(address);
  }

  /** Why the link is down, if it is. */
  get broken(): Error | undefined {
    return this.#broken;
  }

  /**
   * Send a request and return the raw answer; transport failures reject. Every request leaves
   * through here, `expect` or `create`: they add the caller's trace context when a span is active.
   */
  send(req: Request, opts?: RequestOptions): Promise<Response> {
    return this.transport.request(withTrace(req), opts);
  }

  /** Send a request whose answer must be `ok`/`value`/`task`/`pending`; `error` rejects typed. */
  async expect(req: Request, opts?: RequestOptions): Promise<Response> {
    const res = await this.transport.request(withTrace(req), opts);
    if (res.t === "error") throw errorFromWire(res.error, this.where);
    return res;
  }

  /** Answer of a request that must carry a value frame. */
  async value(req: Request, opts?: RequestOptions): Promise<Frame> {
    const res = await this.expect(req, opts);
    // Any other answer means the two ends disagree on the protocol: INTERNAL, not bad input.
    if (res.t !== "value") throw new CodecError(`expected a value answer to ${req.t}, got ${res.t}`, { ...this.where, code: "INTERNAL" });
    return res.value;
  }

  /** Create an object; creation failures become AgentCreationError (with the server's code). */
  async create(oid: string, cls: string, args: Uint8Array, opts?: RequestOptions): Promise<void> {
    const res = await this.transport.request(withTrace({ t: "create", oid, cls, args }), opts);
    if (res.t === "error") {
      const e = errorFromWire(res.error, this.where);
      if (e.code === "UNAVAILABLE" || e.code === "UNAUTHENTICATED" || e.code === "DEADLINE_EXCEEDED") throw e;
      throw new AgentCreationError(e.message, { ...this.where, code: res.error.code, cause: e });
    }
    if (res.t !== "ok") throw new CodecError(`unexpected answer ${res.t} to create (a protocol error)`, { ...this.where, code: "INTERNAL" });
  }

  /** True if the server answers `alive`. */
  async alive(timeoutMs = 5000): Promise<boolean> {
    try {
      const r = await this.transport.request({ t: "alive" }, { timeoutMs });
      return r.t === "ok";
    } catch (e) {
      if (e instanceof AgentServerError && e.code === "UNAUTHENTICATED") throw e;
      return false;
    }
  }
}

function whereOf(a: Address): { host: string; port: number | undefined } {
  return a.child ? { host: `child:${a.child}`, port: undefined } : { host: a.host, port: a.port };
}
