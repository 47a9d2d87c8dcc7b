/**
 * The `Batch` RPC of the gRPC binding: several requests in one call (see
 * `src/rpc/transports/grpc-batch.ts` for the client side). Items go to `servicer.handle` in
 * order, as if they had arrived one by one; answers stream back as they are ready, with their
 * item's index. Answers ready in the same turn of the event loop share one message, and a
 * message never mixes a large value with others, so no message exceeds what one answer alone
 * would need.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Request, Response } from "../../rpc/protocol.ts";
import { BATCH_KINDS, toReply, type WireBatchReply } from "../../rpc/transports/grpc-proto.ts";
import type { Servicer } from "../servicer.ts";

/** Most items one Batch may carry (the client sends at most 256). */
export const MAX_BATCH_ITEMS = 4096;
/** Answers are sent at once when the pending ones reach this many bytes. */
const FLUSH_BYTES = 256 * 1024;

type Answer = { index: number; reply: ReturnType<typeof toReply> };
type BatchCall = grpc.ServerWritableStream<{ items?: Array<Record<string, object>> }, WireBatchReply>;

/** What the binding lends the handler. */
export interface BatchDeps {
  servicer: Servicer;
  authorized(md: grpc.Metadata): boolean;
  /** A signal that aborts when the client cancels the call. */
  cancelSignal(call: BatchCall): { signal: AbortSignal; end(): void };
  unauthenticated: Partial<grpc.StatusObject>;
  invalid(message: string): Partial<grpc.StatusObject>;
}

/** The handler of `rpc Batch(BatchRequest) returns (stream BatchReply)`. */
export function batchHandler(deps: BatchDeps): grpc.handleServerStreamingCall<{ items?: Array<Record<string, object>> }, WireBatchReply> {
  return (call) => {
    if (!deps.authorized(call.metadata)) {
      call.emit("error", deps.unauthenticated);
      return;
    }
    const items = call.request.items ?? [];
    if (items.length > MAX_BATCH_ITEMS) {
      call.emit("error", deps.invalid(`a batch holds at most ${MAX_BATCH_ITEMS} requests, not ${items.length}`));
      return;
    }
    if (items.length === 0) {
      call.end();
      return;
    }
    const c = deps.cancelSignal(call);
    let left = items.length;
    let out: Answer[] = [];
    let outBytes = 0;
    let scheduled: ReturnType<typeof setImmediate> | undefined;
    const flush = () => {
      if (scheduled) clearImmediate(scheduled);
      scheduled = undefined;
      if (out.length === 0) return;
      const answers = out;
      out = [];
      outBytes = 0;
      if (!c.signal.aborted) call.write({ answers });
    };
    const answer = (index: number, r: Response) => {
      const size = r.t === "value" ? r.value.byteLength : 64;
      // A large value travels alone, so a message is never bigger than one answer needs.
      if (outBytes > 0 && outBytes + size > FLUSH_BYTES) flush();
      out.push({ index, reply: toReply(r) });
      outBytes += size;
      if (--left === 0) {
        flush();
        c.end();
        call.end();
      } else if (outBytes >= FLUSH_BYTES) flush();
      else scheduled ??= setImmediate(flush);
    };
    for (let i = 0; i < items.length; i++) {
      const req = itemRequest(items[i]);
      if (!req) {
        answer(i, { t: "error", error: { code: "INVALID_ARGUMENT", message: "a batch item must hold exactly one batchable request" } });
        continue;
      }
      const index = i;
      deps.servicer.handle(req, c.signal).then((r) => answer(index, r));
    }
  };
}

/** `{ call: {...} }` → `{ t: "call", ... }`; undefined unless exactly one batchable kind is set. */
function itemRequest(item: Record<string, object> | undefined): (Partial<Request> & { t: string }) | undefined {
  if (item === null || typeof item !== "object") return undefined;
  let found: string | undefined;
  for (const k of Object.keys(item)) {
    if (item[k] === undefined || item[k] === null) continue;
    if (found !== undefined || !BATCH_KINDS.has(k)) return undefined;
    found = k;
  }
  if (found === undefined) return undefined;
  return { ...(item[found] as object), t: found } as Partial<Request> & { t: string };
}
