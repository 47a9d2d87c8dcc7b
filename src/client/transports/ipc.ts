/**
 * Bun IPC transport (client side): requests to a child server over the IPC channel of a
 * `Bun.spawn`ed process, multiplexed by request number. The child's exit or disconnect
 * breaks the link and rejects every pending request at once. Requests and answers travel as
 * binary frames (`ipc-frame.ts`) where they can: one `Uint8Array` clones far faster than an
 * object tree.
 */
import { AgentServerNotAliveError, CancelledError, DeadlineExceededError } from "../../core/errors.ts";
import type { Request, Response } from "../../core/protocol.ts";
import type { Address, CallbackGrant, RequestOptions, Transport } from "../../core/transport.ts";
import { FrameSender, decodeFrames, encodeFrame, splitForIpc, splitFromIpc, type BinaryFrame } from "../../wire/ipc-frame.ts";
import { withJoinedFrames } from "../../core/split-frame.ts";

/** Frames on a child's IPC channel (both directions). */
export type IpcFrame =
  /** A request; from a child to its parent, `to` names the server the parent should relay it to. */
  | { k: "q"; i: number; r: Request; to?: Address }
  | { k: "a"; i: number; r: Response }
  | { k: "x"; i: number }
  | { k: "ready"; pid: number; id: string }
  | { k: "fatal"; message: string }
  /** A request (parent → child) or an answer (child → parent) as one binary frame. */
  | BinaryFrame;

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
  /** Send requests as binary frames (the peer is a child server, which reads them). */
  readonly #binary: boolean;
  /** Frames out, binary ones batched per tick. */
  readonly #out: FrameSender;
  onBroken?: (err: Error) => void;

  constructor(link: IpcLink, label = "child", opts: { binary?: boolean } = {}) {
    this.#link = link;
    this.#where = { host: label, port: undefined };
    this.#binary = opts.binary ?? true;
    this.#out = new FrameSender((f) => link.send(f as IpcFrame));
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
      let cleanups: Array<() => void> | undefined;
      if (opts?.timeoutMs !== undefined) {
        const t = setTimeout(() => {
          this.#settle(i)?.reject(new DeadlineExceededError(`no answer within ${opts.timeoutMs} ms`, this.#where));
          this.#safeSend({ k: "x", i });
        }, opts.timeoutMs);
        (cleanups ??= []).push(() => clearTimeout(t));
      }
      if (opts?.signal) {
        const s = opts.signal;
        if (s.aborted) return reject(new CancelledError("request aborted", this.#where));
        const onAbort = () => {
          this.#settle(i)?.reject(new CancelledError("request aborted", this.#where));
          this.#safeSend({ k: "x", i });
        };
        s.addEventListener("abort", onAbort, { once: true });
        (cleanups ??= []).push(() => s.removeEventListener("abort", onAbort));
      }
      if (cleanups) {
        const cs = cleanups;
        p.cleanup = () => cs.forEach((c) => c());
      }
      this.#pending.set(i, p);
      const idle = this.#pending.size === 1;
      if (idle) this.#link.busy?.();
      try {
        const bin = !to && this.#binary ? encodeFrame("q", i, req) : undefined;
        // An idle link sends within this tick; a busy one batches until the turn ends. A
        // relayed request goes whole: the parent hands it on to another transport later.
        if (bin) this.#out.queue(bin, idle);
        else this.#out.now(to ? { k: "q", i, r: withJoinedFrames(req), to } : { k: "q", i, r: splitForIpc(req) });
      } catch (e) {
        this.#settle(i);
        reject(new AgentServerNotAliveError(`cannot send to child server: ${(e as Error).message}`, this.#where));
      }
    });
  }

  /** Feed an answer frame received from the child. */
  deliver(frame: IpcFrame): void {
    if (frame instanceof Uint8Array) {
      for (const f of decodeFrames(frame) ?? []) if (f.k === "a") this.#settle(f.i)?.resolve(f.r);
    } else if (frame?.k === "a") {
      splitFromIpc(frame.r);
      this.#settle(frame.i)?.resolve(frame.r);
    }
  }

  /** A child calls back up its IPC link; we answer for the callbacks handed to it. */
  callbackRoute(): CallbackGrant | undefined {
    return this.#broken ? undefined : { route: {}, key: this.#where.host };
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
      this.#out.now(f);
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
    /** This child server's own address (callbacks sent from here are called back at it). */
    readonly self?: Address,
  ) {}

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    return this.via.requestTo(this.to, req, opts);
  }

  abort(): void {
    // The shared upward link belongs to the child process; nothing per-target to close.
  }

  /** A sibling (or any server up the tree) calls back this child server, relayed by parents. */
  callbackRoute(): CallbackGrant | undefined {
    return this.self ? { route: { at: this.self }, key: "ipc" } : undefined;
  }
}
