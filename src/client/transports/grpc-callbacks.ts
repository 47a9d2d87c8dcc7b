/**
 * The caller's end of a gRPC `Callbacks` stream: the link a server calls this process's
 * callbacks back over. The caller opens it (so it needs no listening port and works behind
 * NAT), names it in its first message, and answers each call the server sends down. It has a
 * channel of its own whose HTTP/2 session is unref'd: a callback never keeps the caller alive.
 * When the stream ends, everything handed over it is dropped here, and the server's stubs
 * fail UNAVAILABLE.
 */
import type * as grpc from "@grpc/grpc-js";
import { randomId } from "../../core/ids.ts";
import type { Request, Response } from "../../core/protocol.ts";
import type { CallbackGrant } from "../../core/transport.ts";
import { toReply } from "../../wire/grpc-proto.ts";
import { answerCallback } from "../callback-answer.ts";
import { callbacks } from "../callback-table.ts";

/** A `CallbackAsk` as proto-loader reads it. */
export interface WireCallbackAsk {
  n?: number;
  call?: { id?: string; m?: string; args?: Uint8Array };
  drop?: { id?: string; n?: number };
}

/** One open Callbacks stream. */
export class CallbackLink {
  readonly id = randomId();
  readonly grant: CallbackGrant;
  #closed = false;
  readonly #call: grpc.ClientDuplexStream<object, WireCallbackAsk>;

  constructor(call: grpc.ClientDuplexStream<object, WireCallbackAsk>, onClose: () => void) {
    this.grant = { route: { via: this.id }, key: `link:${this.id}` };
    this.#call = call;
    call.write({ link: this.id });
    call.on("data", (a: WireCallbackAsk) => {
      const n = a.n ?? 0;
      void answerCallback(requestOf(a), this.grant.key).then((res: Response) => {
        if (this.#closed) return;
        try {
          call.write({ n, reply: toReply(res) });
        } catch {
          // The stream is going down; the server fails the call UNAVAILABLE.
        }
      });
    });
    const close = () => {
      if (this.#closed) return;
      this.#closed = true;
      callbacks.dropLink(this.grant.key);
      onClose();
    };
    call.on("error", close);
    call.on("status", close);
    call.on("end", close);
    call.once("metadata", () => unrefSession(call));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** End the link (the connection is closing). */
  close(): void {
    if (this.#closed) return;
    this.#call.cancel();
  }
}

function requestOf(a: WireCallbackAsk): Request | undefined {
  if (a.call) {
    const c = a.call;
    return c.m === undefined ? { t: "cbcall", id: String(c.id), args: c.args ?? new Uint8Array() } : { t: "cbcall", id: String(c.id), m: c.m, args: c.args ?? new Uint8Array() };
  }
  if (a.drop) return { t: "cbdrop", id: String(a.drop.id), n: Number(a.drop.n ?? 0) };
  return undefined;
}

/**
 * Let the process exit while this stream is open: unref the HTTP/2 session under it (a
 * channel of its own, so no other call shares the session). grpc-js does not expose the
 * session; it is found on the call's HTTP/2 stream. Where it cannot be found the stream keeps
 * the process alive until the link is closed, which only delays an exit.
 */
function unrefSession(call: object): void {
  const seen = new Set<object>();
  let level: object[] = [call];
  for (let depth = 0; depth < 10 && level.length > 0; depth++) {
    const next: object[] = [];
    for (const o of level) {
      if (seen.has(o)) continue;
      seen.add(o);
      const s = (o as { session?: { unref?: () => void } }).session;
      if (s && typeof s === "object" && typeof s.unref === "function") {
        s.unref();
        return;
      }
      // grpc-js 1.14: call.call.call.channel.currentPicker.subchannel.child.transport.session
      for (const k of ["call", "nextCall", "child", "channel", "currentPicker", "subchannel", "transport", "http2Stream"]) {
        const v = (o as Record<string, unknown>)[k];
        if (v && typeof v === "object") next.push(v);
      }
    }
    level = next;
  }
}
