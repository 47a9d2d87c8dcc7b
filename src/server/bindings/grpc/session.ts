/**
 * The `Session` RPC of the gRPC binding: a bidi stream per client connection that carries
 * long-poll waits (see `src/client/transports/grpc-session.ts` for the client side). Each item
 * goes to `servicer.handle` as it arrives; its answer goes back with the item's id as soon as
 * it is ready, answers ready in the same turn sharing one message. Parked waits thus hold no
 * HTTP/2 stream of their own. When the client ends or cancels the stream, what is still
 * parked there is released at once (the waits answer `pending` into the void).
 */
import type * as grpc from "@grpc/grpc-js";
import type { Response } from "../../../core/protocol.ts";
import type { WireBatchReply } from "../../../wire/grpc-proto.ts";
import { AnswerBuffer } from "./answer-buffer.ts";
import type { Servicer } from "../../servicer.ts";
import { connectionClosed } from "./guard.ts";
import { itemRequest } from "./batch.ts";

/** Most items one Session message may carry (the client sends at most 1024). */
export const MAX_SESSION_ITEMS = 4096;
/**
 * Most requests open at once on one session. Threat: a client parking unbounded waits on
 * one stream; past it, new items are answered RESOURCE_EXHAUSTED at once.
 */
export const MAX_SESSION_OPEN = 65_536;

type SessionCall = grpc.ServerDuplexStream<{ items?: Array<Record<string, object>>; firstId?: number }, WireBatchReply>;

/** What the binding lends the handler (the token was checked by the binding's call guard). */
export interface SessionDeps {
  servicer: Servicer;
  invalid(message: string): Partial<grpc.StatusObject>;
}

/** The handler of `rpc Session(stream SessionRequest) returns (stream BatchReply)`. */
export function sessionHandler(deps: SessionDeps): grpc.handleBidiStreamingCall<{ items?: Array<Record<string, object>>; firstId?: number }, WireBatchReply> {
  return (call: SessionCall) => {
    const ctl = new AbortController();
    const gone = connectionClosed(call.metadata);
    let open = 0;
    let ended = false;
    let finished = false;
    const out = new AnswerBuffer((answers) => {
      if (!finished && !ctl.signal.aborted) call.write({ answers });
    });
    const finish = () => {
      if (finished) return;
      out.flush();
      finished = true;
      call.end();
    };
    const answer = (index: number, r: Response) => {
      open--;
      if (finished) return;
      out.add(index, r);
      if (ended && open === 0) finish();
    };
    call.on("data", (msg: { items?: Array<Record<string, object>>; firstId?: number }) => {
      const items = msg.items ?? [];
      const first = msg.firstId ?? 0;
      if (items.length > MAX_SESSION_ITEMS) {
        ctl.abort();
        call.emit("error", deps.invalid(`a session message holds at most ${MAX_SESSION_ITEMS} requests, not ${items.length}`));
        return;
      }
      for (let i = 0; i < items.length; i++) {
        const index = first + i;
        open++;
        const req = itemRequest(items[i]);
        if (!req) {
          answer(index, { t: "error", error: { code: "INVALID_ARGUMENT", message: "a session item must hold exactly one batchable request" } });
          continue;
        }
        if (open > MAX_SESSION_OPEN) {
          answer(index, { t: "error", error: { code: "RESOURCE_EXHAUSTED", message: `more than ${MAX_SESSION_OPEN} requests open on one session` } });
          continue;
        }
        deps.servicer.handle(req, ctl.signal, gone).then((r) => answer(index, r));
      }
    });
    call.on("end", () => {
      // The client has nothing pending here any more: release what is still parked.
      ended = true;
      ctl.abort();
      if (open === 0) finish();
    });
    call.on("cancelled", () => {
      finished = true;
      ctl.abort();
    });
    call.on("error", () => {
      finished = true;
      ctl.abort();
    });
  };
}
