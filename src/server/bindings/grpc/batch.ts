/**
 * The `Batch` RPC of the gRPC binding: several requests in one call (see
 * `src/client/transports/grpc-batch.ts` for the client side). Items go to `servicer.handle` in
 * order, as if they had arrived one by one; answers stream back as they are ready, with their
 * item's index. Answers ready in the same turn of the event loop share one message, and a
 * message never mixes a large value with others, so no message exceeds what one answer alone
 * would need.
 *
 * The item cap is checked on the wire bytes, before the message is deserialised
 * (`withCappedBatch`): a 31 MiB message of empty items would otherwise become 16 million
 * objects and block the event loop for seconds before the cap was seen.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Request, Response } from "../../../core/protocol.ts";
import { BATCH_KINDS, type WireBatchReply } from "../../../wire/grpc-proto.ts";
import { AnswerBuffer } from "./answer-buffer.ts";
import type { Servicer } from "../../servicer.ts";
import { connectionClosed } from "./guard.ts";

/** Most items one Batch may carry (the client sends at most 256). */
export const MAX_BATCH_ITEMS = 4096;

type BatchCall = grpc.ServerWritableStream<BatchRequest, WireBatchReply>;

/** What the binding lends the handler (the token was checked before the handler runs). */
export interface BatchDeps {
  servicer: Servicer;
  /** A signal that aborts when the client cancels the call. */
  cancelSignal(call: BatchCall): { signal: AbortSignal; end(): void };
  invalid(message: string): Partial<grpc.StatusObject>;
}

/** Marks a BatchRequest refused before deserialising: it holds more than `MAX_BATCH_ITEMS` items. */
const TOO_MANY = Symbol("too many batch items");
type BatchRequest = { items?: Array<Record<string, object>>; [TOO_MANY]?: true };

/**
 * `service` with a `Batch` whose request deserialiser first counts the items on the wire and,
 * past `MAX_BATCH_ITEMS`, returns a marker instead of deserialising (the handler answers
 * INVALID_ARGUMENT). Counting stops at the first item over the cap, so a refusal costs
 * O(cap), whatever the message size.
 */
export function withCappedBatch(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const batch = service.Batch;
  if (!batch) return service;
  const deserialize = batch.requestDeserialize;
  return {
    ...service,
    Batch: { ...batch, requestDeserialize: (b: Buffer) => (overCap(b) ? { [TOO_MANY]: true } : deserialize(b)) },
  };
}

/**
 * Does protobuf `b` (a BatchRequest) hold more than `MAX_BATCH_ITEMS` items (field 1)? Reads
 * only tags and lengths; anything it cannot walk is left to the real deserialiser to refuse.
 */
function overCap(b: Uint8Array): boolean {
  let at = 0;
  let items = 0;
  const varint = (): number => {
    let v = 0;
    for (let scale = 1; at < b.length && scale <= 2 ** 63; scale *= 128) {
      const byte = b[at++]!;
      v += (byte & 0x7f) * scale;
      if (byte < 0x80) return v;
    }
    return -1;
  };
  while (at < b.length) {
    const tag = varint();
    if (tag < 0) return false;
    const wireType = tag % 8;
    if (wireType === 2) {
      const len = varint();
      if (len < 0) return false;
      at += len;
      if (Math.floor(tag / 8) === 1 && ++items > MAX_BATCH_ITEMS) return true;
    } else if (wireType === 0) {
      if (varint() < 0) return false;
    } else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else return false;
  }
  return false;
}

/** The handler of `rpc Batch(BatchRequest) returns (stream BatchReply)`. */
export function batchHandler(deps: BatchDeps): grpc.handleServerStreamingCall<BatchRequest, WireBatchReply> {
  return (call) => {
    const items = call.request.items ?? [];
    if (call.request[TOO_MANY] || items.length > MAX_BATCH_ITEMS) {
      call.emit("error", deps.invalid(`a batch holds at most ${MAX_BATCH_ITEMS} requests`));
      return;
    }
    if (items.length === 0) {
      call.end();
      return;
    }
    const gone = connectionClosed(call.metadata);
    const c = deps.cancelSignal(call);
    let left = items.length;
    const out = new AnswerBuffer((answers) => {
      if (!c.signal.aborted) call.write({ answers });
    });
    const answer = (index: number, r: Response) => {
      out.add(index, r);
      if (--left === 0) {
        out.flush();
        c.end();
        call.end();
      }
    };
    for (let i = 0; i < items.length; i++) {
      const req = itemRequest(items[i]);
      if (!req) {
        answer(i, { t: "error", error: { code: "INVALID_ARGUMENT", message: "a batch item must hold exactly one batchable request" } });
        continue;
      }
      const index = i;
      deps.servicer.handle(req, c.signal, gone).then((r) => answer(index, r));
    }
  };
}

/** `{ call: {...} }` → `{ t: "call", ... }`; undefined unless exactly one batchable kind is set. */
export function itemRequest(item: Record<string, object> | undefined): (Partial<Request> & { t: string }) | undefined {
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
