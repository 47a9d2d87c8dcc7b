/**
 * The `Callbacks` RPC of the gRPC binding: the server's end of a caller's callback link (the
 * caller's end is `src/client/transports/grpc-callbacks.ts`). The caller's first message names
 * the link; from then on stubs decoded from that caller's references (`via` the link) send
 * their calls down this stream, numbered, and the caller answers each by number. When the
 * stream ends — the caller exited, released its connection, or lost it — every call still
 * open there fails UNAVAILABLE and the stubs over it fail at once from then on.
 */
import * as grpc from "@grpc/grpc-js";
import { callbacks } from "../../../client/callback-table.ts";
import { AgentServerNotAliveError, ResourceExhaustedError } from "../../../core/errors.ts";
import { isId } from "../../../core/ids.ts";
import type { CallbackCallRequest, CallbackDropRequest, Response } from "../../../core/protocol.ts";
import { fromReply, type WireReply } from "../../../wire/grpc-proto.ts";

/**
 * Most callback calls open at once on one link. Threat: a server-side agent calling a
 * callback in a loop without awaiting; past it, calls fail RESOURCE_EXHAUSTED at once.
 */
export const MAX_OPEN_CALLBACK_CALLS = 65_536;

interface AnswerMsg {
  link?: string;
  n?: number;
  reply?: WireReply;
}

const WHERE = { host: "callback", port: undefined };

/** The handler of `rpc Callbacks(stream CallbackAnswer) returns (stream CallbackAsk)`. */
export function callbacksHandler(): grpc.handleBidiStreamingCall<AnswerMsg, object> {
  return (call) => {
    let link: string | undefined;
    let next = 1;
    let closed = false;
    const open = new Map<number, (r: Response) => void>();
    // The caller's end unrefs its session once it sees our headers.
    call.sendMetadata(new grpc.Metadata());
    const close = () => {
      if (closed) return;
      closed = true;
      const why = new AgentServerNotAliveError("the caller that handed out this callback is gone (its connection closed)", WHERE);
      if (link !== undefined) callbacks.closeLink(link, why);
      for (const settle of open.values()) settle({ t: "error", error: { code: "UNAVAILABLE", message: why.message } });
      open.clear();
    };
    call.on("data", (m: AnswerMsg) => {
      if (link === undefined) {
        const id = m.link;
        if (!isId(id) || !callbacks.openLink(id, { call: (req) => ask(req) })) {
          closed = true;
          call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: "the first Callbacks message must name a new link (32 hex)" });
          return;
        }
        link = id;
        return;
      }
      const settle = open.get(m.n ?? 0);
      if (!settle) return;
      open.delete(m.n ?? 0);
      settle((m.reply && fromReply(m.reply)) ?? { t: "error", error: { code: "INTERNAL", message: "empty callback answer" } });
    });
    call.on("end", () => {
      close();
      call.end();
    });
    call.on("error", close);
    call.on("cancelled", close);
    call.on("close", close);

    const ask = (req: CallbackCallRequest | CallbackDropRequest): Promise<Response> => {
      if (closed) return Promise.reject(new AgentServerNotAliveError("the caller that handed out this callback is gone (its connection closed)", WHERE));
      if (open.size >= MAX_OPEN_CALLBACK_CALLS) return Promise.reject(new ResourceExhaustedError(`more than ${MAX_OPEN_CALLBACK_CALLS} callback calls open on one link`, WHERE));
      const n = next++;
      if (next > 0xffff_fff0) next = 1;
      return new Promise<Response>((resolve) => {
        open.set(n, resolve);
        const msg = req.t === "cbcall" ? { n, call: req.m === undefined ? { id: req.id, args: req.args } : { id: req.id, m: req.m, args: req.args } } : { n, drop: { id: req.id, n: req.n } };
        try {
          call.write(msg);
        } catch {
          open.delete(n);
          close();
          resolve({ t: "error", error: { code: "UNAVAILABLE", message: "the caller's callback link is closed" } });
        }
      });
    };
  };
}
