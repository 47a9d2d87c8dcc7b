/**
 * Bun IPC transport (client side): requests to a child server over the IPC channel of a
 * `Bun.spawn`ed process, multiplexed by request number. The child's exit or disconnect
 * breaks the link and rejects every pending request at once.
 */
import { AgentServerNotAliveError, CancelledError, DeadlineExceededError } from "../errors.ts";
import type { Request, Response } from "../protocol.ts";
import type { Address, RequestOptions, Transport } from "../transport.ts";

/** Frames on a child's IPC channel (both directions). */
export type IpcFrame =
  /** A request; from a child to its parent, `to` names the server the parent should relay it to. */
  | { k: "q"; i: number; r: Request; to?: Address }
  | { k: "a"; i: number; r: Response }
  | { k: "x"; i: number }
  | { k: "ready"; pid: number; id: string }
  | { k: "fatal"; message: string };

interface Pending {
  resolve(r: Response): void;
  reject(e: Error): void;
  cleanup?: () => void;
}

/** Hooks the owner gives the transport. */
export interface IpcLink {
  /** Post one frame to the peer. */
  send(frame: IpcFrame): void;
  /** Called when the first request becomes pending (keep the process alive). */
  busy?(): void;
  /** Called when no request is pending any more (let the process exit). */
  idle?(): void;
}

/** One IPC link to a child server. */
export class IpcTransport implements Transport {
  readonly #link: IpcLink;
  readonly #pending = new Map<number, Pending>();
  readonly #where: { host: string; port: undefined };
  #next = 1;
  #broken: Error | undefined;
  onBroken?: (err: Error) => void;

  constructor(link: IpcLink, label = "child") {
    this.#link = link;
    this.#where = { host: label, port: undefined };
  }

  /** Requests still waiting for an answer. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    return this.requestTo(undefined, req, opts);
  }

  /** Send a request the peer relays to `to` (child → parent direction). */
  requestTo(to: Address | undefined, req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#broken) return Promise.reject(this.#broken);
    const i = this.#next++;
    return new Promise<Response>((resolve, reject) => {
      const p: Pending = { resolve, reject };
      const cleanups: Array<() => void> = [];
      if (opts?.timeoutMs !== undefined) {
        const t = setTimeout(() => {
          this.#settle(i)?.reject(new DeadlineExceededError(`no answer within ${opts.timeoutMs} ms`, this.#where));
          this.#safeSend({ k: "x", i });
        }, opts.timeoutMs);
        cleanups.push(() => clearTimeout(t));
      }
      if (opts?.signal) {
        const s = opts.signal;
        if (s.aborted) return reject(new CancelledError("request aborted", this.#where));
        const onAbort = () => {
          this.#settle(i)?.reject(new CancelledError("request aborted", this.#where));
          this.#safeSend({ k: "x", i });
        };
        s.addEventListener("abort", onAbort, { once: true });
        cleanups.push(() => s.removeEventListener("abort", onAbort));
      }
      if (cleanups.length) p.cleanup = () => cleanups.forEach((c) => c());
      this.#pending.set(i, p);
      if (this.#pending.size === 1) this.#link.busy?.();
      try {
        this.#link.send(to ? { k: "q", i, r: req, to } : { k: "q", i, r: req });
      } catch (e) {
        this.#settle(i);
        reject(new AgentServerNotAliveError(`cannot send to child server: ${(e as Error).message}`, this.#where));
      }
    });
  }

  /** Feed an answer frame received from the child. */
  deliver(frame: IpcFrame): void {
    if (frame.k === "a") this.#settle(frame.i)?.resolve(frame.r);
  }

  abort(reason: Error): void {
    if (this.#broken) return;
    this.#broken = reason;
    const all = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of all) {
      p.cleanup?.();
      p.reject(reason);
    }
    this.#link.idle?.();
    this.onBroken?.(reason);
  }

  #settle(i: number): Pending | undefined {
    const p = this.#pending.get(i);
    if (!p) return undefined;
    this.#pending.delete(i);
    p.cleanup?.();
    if (this.#pending.size === 0) this.#link.idle?.();
    return p;
  }

  #safeSend(f: IpcFrame): void {
    try {
      this.#link.send(f);
    } catch {
      // The link is going down; the exit handler rejects what is left.
    }
  }
}

/** A transport to `to`, relayed by the peer at the other end of `via` (a child's parent). */
export class RelayedTransport implements Transport {
  onBroken?: (err: Error) => void;

  constructor(
    readonly via: IpcTransport,
    readonly to: Address,
  ) {}

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    return this.via.requestTo(this.to, req, opts);
  }

  abort(): void {
    // The shared upward link belongs to the child process; nothing per-target to close.
  }
}
