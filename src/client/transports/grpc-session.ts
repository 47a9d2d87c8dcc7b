/**
 * The wait session of the gRPC transport (client side): one `Session` bidi stream per
 * connection carries every long-poll wait. A wait the server holds for seconds then costs no
 * HTTP/2 stream of its own, so a connection with thousands of parked waits still has every
 * stream free for calls (a server caps concurrent streams per connection), and answers come
 * back in whatever order results land.
 *
 * Waits issued in the same turn of the event loop share one message (numbered from
 * `firstId`); answers ready together share one message too. The stream is opened on the first
 * wait and ended shortly after the last answer, so an idle client process can exit. A server
 * without `Session` (UNIMPLEMENTED before any answer) turns the session off for the
 * connection and its waits go the old way.
 */
import * as grpc from "@grpc/grpc-js";
import { AgentServerNotAliveError, CancelledError, CodecError, DeadlineExceededError } from "../../core/errors.ts";
import type { Request, Response } from "../../core/protocol.ts";
import type { RequestOptions } from "../../core/transport.ts";
import { fromReply, requestMessage, type WireBatchReply } from "../../wire/grpc-proto.ts";

/** Most waits in one Session message. */
const SESSION_MAX_ITEMS = 1024;
/** An idle session stream is ended after this long without pending waits. */
const SESSION_IDLE_MS = 20;

/** A Session message: items numbered `firstId`, `firstId + 1`, ... */
export interface WireSessionRequest {
  items: object[];
  firstId: number;
}

/** What the session needs from its transport. */
export interface SessionChannel {
  /** Open a Session stream (token metadata) on the channel in use now. */
  open(): grpc.ClientDuplexStream<WireSessionRequest, WireBatchReply>;
  /** A gRPC status error as one of the error tree. */
  statusError(e: grpc.ServiceError | Error): Error;
  /** Send a request the old way (a server without Session). */
  fallback(req: Request, opts?: RequestOptions): Promise<Response>;
  readonly where: { host: string; port: number };
}

interface Item {
  id: number;
  req: Request;
  resolve(r: Response): void;
  reject(e: Error): void;
  timer?: Timer;
  onAbort?: () => void;
  signal?: AbortSignal;
}

interface Stream {
  call: grpc.ClientDuplexStream<WireSessionRequest, WireBatchReply>;
  /** Items sent on this stream and not answered yet. */
  items: Map<number, Item>;
  answered: boolean;
}

/** Multiplexes waits over one Session stream. */
export class WaitSession {
  readonly #ch: SessionChannel;
  #stream: Stream | undefined;
  #queue: Item[] = [];
  #scheduled = false;
  #next = 1;
  #enabled = true;
  #idle: Timer | undefined;
  #broken: Error | undefined;

  constructor(ch: SessionChannel) {
    this.#ch = ch;
  }

  /** Send one wait over the session; settles on its answer, deadline, abort or stream loss. */
  request(req: Request, opts?: RequestOptions): Promise<Response> {
    if (!this.#enabled) return this.#ch.fallback(req, opts);
    if (this.#broken) return Promise.reject(this.#broken);
    if (opts?.signal?.aborted) return Promise.reject(new CancelledError("request aborted", this.#ch.where));
    return new Promise<Response>((resolve, reject) => {
      const it: Item = { id: this.#next++, req, resolve, reject };
      if (this.#next > 0xffff_fff0) this.#next = 1;
      if (opts?.timeoutMs !== undefined) {
        const ms = opts.timeoutMs;
        it.timer = setTimeout(() => this.#settle(it, new DeadlineExceededError(`no answer to ${req.t} within ${ms} ms`, this.#ch.where)), ms);
      }
      if (opts?.signal) {
        it.signal = opts.signal;
        it.onAbort = () => this.#settle(it, new CancelledError("request aborted", this.#ch.where));
        opts.signal.addEventListener("abort", it.onAbort, { once: true });
      }
      clearTimeout(this.#idle);
      this.#idle = undefined;
      this.#queue.push(it);
      if (this.#queue.length >= SESSION_MAX_ITEMS) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#flush();
        });
      }
    });
  }

  /** Fail everything and stop (the transport was torn down). */
  abort(reason: Error): void {
    this.#broken = reason;
    clearTimeout(this.#idle);
    const queued = this.#queue;
    this.#queue = [];
    for (const it of queued) this.#settle(it, reason);
    const s = this.#stream;
    this.#stream = undefined;
    if (s) {
      for (const it of s.items.values()) this.#settle(it, reason);
      s.call.cancel();
    }
  }

  #flush(): void {
    const items = this.#queue.filter((it) => !this.#done(it));
    this.#queue = [];
    if (items.length === 0) return this.#maybeIdle();
    if (!this.#enabled) {
      for (const it of items) this.#ch.fallback(it.req, { ...(it.signal ? { signal: it.signal } : {}) }).then((r) => this.#settle(it, r), (e: Error) => this.#settle(it, e));
      return;
    }
    // Consecutive ids per message: the server numbers the items from `firstId`.
    let run: Item[] = [];
    for (const it of items) {
      if (run.length > 0 && it.id !== run[run.length - 1]!.id + 1) {
        this.#write(run);
        run = [];
      }
      run.push(it);
    }
    this.#write(run);
  }

  #write(items: Item[]): void {
    let s: Stream;
    try {
      s = this.#stream ?? this.#open();
    } catch (e) {
      for (const it of items) this.#settle(it, this.#ch.statusError(e as Error));
      return;
    }
    for (const it of items) s.items.set(it.id, it);
    try {
      s.call.write({ items: items.map((it) => ({ [it.req.t]: requestMessage(it.req) })), firstId: items[0]!.id });
    } catch (e) {
      for (const it of items) {
        s.items.delete(it.id);
        this.#settle(it, new CodecError(`cannot send ${it.req.t}: ${(e as Error).message}`, this.#ch.where));
      }
    }
  }

  #open(): Stream {
    const call = this.#ch.open();
    const s: Stream = { call, items: new Map(), answered: false };
    this.#stream = s;
    call.on("data", (r: WireBatchReply) => {
      s.answered = true;
      for (const a of r.answers ?? []) {
        const it = s.items.get(a.index ?? 0);
        if (!it) continue;
        s.items.delete(it.id);
        const res = a.reply && fromReply(a.reply);
        this.#settle(it, res ?? new CodecError(`empty answer to ${it.req.t} in a session`, { ...this.#ch.where, code: "INTERNAL" }));
      }
      this.#maybeIdle();
    });
    const lost = (e: Error) => {
      if (this.#stream === s) this.#stream = undefined;
      const left = [...s.items.values()];
      s.items.clear();
      if ((e as grpc.ServiceError).code === grpc.status.UNIMPLEMENTED && !s.answered) {
        // An older server: no Session. Its waits go the old way from now on.
        this.#enabled = false;
        for (const it of left) this.#ch.fallback(it.req, it.signal ? { signal: it.signal } : {}).then((r) => this.#settle(it, r), (x: Error) => this.#settle(it, x));
        return;
      }
      for (const it of left) this.#settle(it, e);
    };
    call.on("error", (e: grpc.ServiceError) => lost(this.#ch.statusError(e)));
    call.on("status", (st: grpc.StatusObject) => {
      if (st.code === grpc.status.OK) lost(new AgentServerNotAliveError("the server ended the wait session", this.#ch.where));
    });
    return s;
  }

  /** End the stream once nothing is pending for a moment, so an idle process can exit. */
  #maybeIdle(): void {
    const s = this.#stream;
    if (!s || s.items.size > 0 || this.#queue.length > 0 || this.#idle) return;
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      if (this.#stream !== s || s.items.size > 0 || this.#queue.length > 0) return;
      this.#stream = undefined;
      s.call.end();
    }, SESSION_IDLE_MS);
    this.#idle.unref();
  }

  #done(it: Item): boolean {
    return it.resolve === noop;
  }

  #settle(it: Item, r: Response | Error): void {
    if (this.#done(it)) return;
    const { resolve, reject } = it;
    it.resolve = noop;
    it.reject = noop;
    clearTimeout(it.timer);
    if (it.onAbort) it.signal?.removeEventListener("abort", it.onAbort);
    this.#stream?.items.delete(it.id);
    if (r instanceof Error) reject(r);
    else resolve(r);
    this.#maybeIdle();
  }
}

const noop = () => {};
