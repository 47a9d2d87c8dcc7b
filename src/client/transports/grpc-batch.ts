/**
 * Request batching for the gRPC transport (client side). Requests issued in the same turn of
 * the event loop on one connection — an async call and its first wait, a loop of calls, many
 * creations — are queued and sent as one `Batch` RPC when the turn ends, instead of one RPC each: grpc-js
 * costs tens of microseconds per call, far more than our own work per request. A lone
 * request still goes as its own unary RPC, so a single call pays nothing extra.
 *
 * Answers stream back per item as the server has them (a slow item never holds up a fast
 * one). A batch is capped by count and payload bytes; a request that carries a cancel
 * signal, or a deadline other than a wait's guard, is never batched (it keeps its own gRPC
 * call, so cancelling or timing it out cancels exactly that call on the server). A server
 * without `Batch` (UNIMPLEMENTED) turns batching off for the connection and the requests are
 * sent again one by one.
 */
import * as grpc from "@grpc/grpc-js";
import { CodecError, DeadlineExceededError } from "../../core/errors.ts";
import type { Request, Response } from "../../core/protocol.ts";
import type { RequestOptions } from "../../core/transport.ts";
import { BATCH_KINDS, fromReply, requestMessage, type WireBatchReply } from "../../wire/grpc-proto.ts";

/** Most requests in one Batch call. */
export const BATCH_MAX_ITEMS = 256;
/** Most payload bytes (codec frames) in one Batch call; a larger request goes on its own. */
export const BATCH_MAX_BYTES = 1024 * 1024;

/** What the batcher needs from its transport. */
export interface BatchChannel {
  /** Send one request as its own RPC (the transport's unary path). */
  solo(req: Request, opts?: RequestOptions): Promise<Response>;
  /** Start a Batch call (token metadata, deadline) on the channel in use now. */
  open(msg: { items: object[] }, deadline: number | undefined): grpc.ClientReadableStream<WireBatchReply>;
  /** A gRPC status error as one of the error tree. */
  statusError(e: grpc.ServiceError | Error): Error;
  readonly where: { host: string; port: number };
  /** The connection's message limit: a batch stays well under it. */
  readonly maxBytes: number;
}

interface Item {
  req: Request;
  opts: RequestOptions | undefined;
  /** `performance.now()` by which the answer must be in (a wait's hung-server guard). */
  deadlineAt?: number;
  resolve(r: Response): void;
  reject(e: Error): void;
  done?: boolean;
}

interface OpenBatch {
  stream: grpc.ClientReadableStream<WireBatchReply>;
  items: Item[];
  left: number;
  answered: number;
  timer?: Timer;
}

/** Coalesces the requests of one tick into Batch calls. */
export class RequestBatcher {
  readonly #ch: BatchChannel;
  #queue: Item[] = [];
  #queuedBytes = 0;
  #scheduled = false;
  #enabled = true;
  /** Requests sent through this batcher and not answered yet. */
  #inflight = 0;
  readonly #open = new Set<OpenBatch>();

  /** Payload bytes a batch may carry. */
  readonly #maxBytes: number;

  constructor(ch: BatchChannel) {
    this.#ch = ch;
    this.#maxBytes = Math.min(BATCH_MAX_BYTES, Math.floor(ch.maxBytes / 2));
  }

  /** May `req` be batched? */
  accepts(req: Request, opts?: RequestOptions): boolean {
    if (!this.#enabled || !BATCH_KINDS.has(req.t) || opts?.signal) return false;
    if (opts?.timeoutMs !== undefined && req.t !== "wait") return false;
    return payloadBytes(req) <= this.#maxBytes;
  }

  /** Queue `req` for the batch of this tick. */
  add(req: Request, opts?: RequestOptions): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      const it: Item = { req, opts, resolve, reject };
      if (opts?.timeoutMs !== undefined) it.deadlineAt = performance.now() + opts.timeoutMs;
      const bytes = payloadBytes(req);
      if (this.#queuedBytes + bytes > this.#maxBytes) this.#flush();
      this.#queue.push(it);
      this.#queuedBytes += bytes;
      if (this.#queue.length >= BATCH_MAX_ITEMS) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        const flush = () => {
          this.#scheduled = false;
          this.#flush();
        };
        // An idle connection sends within this tick: two microtasks later, so the first wait
        // of `await x.asyncMethod()` (`await` calls `then` one microtask after the call was
        // queued) still joins the call. A busy one collects until the end of this turn of the
        // event loop, when every caller woken by the last answers has issued its next request.
        if (this.#inflight === 0) queueMicrotask(() => queueMicrotask(flush));
        else setImmediate(flush);
      }
    });
  }

  /** Fail everything queued or in flight (the transport was torn down). */
  abort(reason: Error): void {
    const queued = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    for (const it of queued) settle(it, reason);
    for (const b of [...this.#open]) {
      this.#close(b);
      for (const it of b.items) this.#settle(it, reason);
      b.stream.cancel();
    }
  }

  #flush(): void {
    const items = this.#queue;
    if (items.length === 0) return;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#inflight += items.length;
    if (items.length === 1 || !this.#enabled) {
      for (const it of items) this.#solo(it);
      return;
    }
    this.#send(items);
  }

  #send(items: Item[]): void {
    let deadline: number | undefined = 0;
    for (const it of items) deadline = it.deadlineAt === undefined || deadline === undefined ? undefined : Math.max(deadline, it.deadlineAt);
    let stream: grpc.ClientReadableStream<WireBatchReply>;
    try {
      const msg = { items: items.map((it) => ({ [it.req.t]: requestMessage(it.req) })) };
      stream = this.#ch.open(msg, deadline === undefined ? undefined : Date.now() + (deadline - performance.now()));
    } catch (e) {
      // grpc-js serializes synchronously: a malformed request throws here. Send them one by
      // one so only the bad one fails.
      for (const it of items) this.#solo(it);
      return;
    }
    const b: OpenBatch = { stream, items, left: items.length, answered: 0 };
    this.#open.add(b);
    this.#arm(b);
    stream.on("data", (r: WireBatchReply) => {
      for (const a of r.answers ?? []) {
        const it = items[a.index ?? 0];
        if (!it || it.done) continue;
        b.answered++;
        const res = a.reply && fromReply(a.reply);
        this.#done(b, it, res ?? new CodecError(`empty answer to ${it.req.t} in a batch`, this.#ch.where));
      }
    });
    stream.on("error", (e: grpc.ServiceError) => {
      if (!this.#open.has(b)) return;
      this.#close(b);
      if (e.code === grpc.status.UNIMPLEMENTED && b.answered === 0) {
        // An older server: no Batch. Send these again one by one, and batch no more.
        this.#enabled = false;
        for (const it of items) if (!it.done) this.#solo(it);
        return;
      }
      const err = this.#ch.statusError(e);
      for (const it of items) this.#settle(it, err);
    });
    stream.on("status", (s: grpc.StatusObject) => {
      if (s.code !== grpc.status.OK || !this.#open.has(b)) return;
      this.#close(b);
      for (const it of items) this.#settle(it, new CodecError(`no answer to ${it.req.t} in a batch`, this.#ch.where));
    });
  }

  #solo(it: Item): void {
    this.#ch.solo(it.req, it.opts).then(
      (r) => this.#settle(it, r),
      (e: Error) => this.#settle(it, e),
    );
  }

  #settle(it: Item, r: Response | Error): void {
    if (it.done) return;
    this.#inflight--;
    settle(it, r);
  }

  #done(b: OpenBatch, it: Item, r: Response | Error): void {
    this.#settle(it, r);
    if (--b.left === 0) this.#close(b);
  }

  #close(b: OpenBatch): void {
    this.#open.delete(b);
    clearTimeout(b.timer);
  }

  /** One timer per batch, at the earliest deadline of an unanswered item. */
  #arm(b: OpenBatch): void {
    let next = Infinity;
    for (const it of b.items) if (!it.done && it.deadlineAt !== undefined && it.deadlineAt < next) next = it.deadlineAt;
    if (next === Infinity) return;
    b.timer = setTimeout(() => {
      const now = performance.now();
      for (const it of b.items) {
        if (it.done || it.deadlineAt === undefined || it.deadlineAt > now) continue;
        this.#done(b, it, new DeadlineExceededError(`no answer to ${it.req.t} within ${it.opts?.timeoutMs} ms`, this.#ch.where));
      }
      if (b.left === 0) b.stream.cancel();
      else this.#arm(b);
    }, Math.max(0, next - performance.now()));
  }
}

function settle(it: Item, r: Response | Error): void {
  if (it.done) return;
  it.done = true;
  if (r instanceof Error) it.reject(r);
  else it.resolve(r);
}

/** Bytes of the codec frames a request carries. */
function payloadBytes(req: Request): number {
  switch (req.t) {
    case "call":
    case "create":
      return req.args.byteLength;
    default:
      return 0;
  }
}
