/**
 * The gate every gRPC call passes before a byte of its request message is read: a grpc-js
 * server interceptor that checks the token on the call's metadata, and a receive deadline for
 * the request itself.
 *
 * Why an interceptor: grpc-js reads, buffers and deserialises the whole request message before
 * a service handler runs, so a token checked in the handler lets anyone who can reach the port
 * make the server hold and parse 32 MiB per call (measured: four 31 MiB calls → 8 GiB RSS and
 * the event loop blocked for seconds). grpc-js keeps the HTTP/2 stream paused until the
 * handler asks for the message, and the handler only asks once our `onReceiveMetadata` passes
 * the call on; when we end the call there instead, grpc-js marks it cancelled and drops every
 * data frame that arrives after, unread. An unauthenticated call costs its headers.
 *
 * Why a receive deadline: a client (authenticated, or on a server without a token) that sends
 * most of a large message and then stalls would hold the part it sent for as long as it keeps
 * the stream open. Each request here is one message followed by the end of the client's half
 * of the stream; if both have not arrived within `receiveTimeoutMs` of the headers, the call
 * ends with DEADLINE_EXCEEDED and the part received is dropped with it. A call that streams its
 * requests (the wait Session), which may rightly idle between messages, gets the deadline for
 * each message in progress instead: from its first bytes to its last.
 *
 * Ending a call from the server does not end the client's half of its HTTP/2 stream: the
 * stream stays open (and grpc-js keeps what it had buffered) for as long as the client keeps it.
 * So after the status the guard also resets the stream (RST_STREAM), which tells the client to
 * stop sending and frees the call at once. grpc-js has no public way to do that; `resetCall`
 * reaches the stream where grpc-js 1.14 keeps it, and does nothing if it is not there.
 */
import * as grpc from "@grpc/grpc-js";
import { createHash, timingSafeEqual } from "node:crypto";
import { constants as h2 } from "node:http2";
import { authFailed } from "../../event-log.ts";

/** The one message for every authentication failure: it must not tell a wrong token from a missing one. */
export const UNAUTHENTICATED_MESSAGE = "invalid or missing authentication token";

/** Does this call's metadata carry the server's token? */
export type Auth = (md: grpc.Metadata) => boolean;

/** Options of `callGuard`. */
export interface GuardOptions {
  /** The token check (see `makeAuth`). */
  authorized: Auth;
  /** Longest time from a call's headers to the last byte of its request; then DEADLINE_EXCEEDED. */
  receiveTimeoutMs: number;
}

/** The server interceptor that authenticates each call on its metadata and bounds how long its request may take to arrive. */
export function callGuard(opts: GuardOptions): grpc.ServerInterceptor {
  const late: grpc.StatusObject = {
    code: grpc.status.DEADLINE_EXCEEDED,
    details: `the request did not arrive within ${opts.receiveTimeoutMs} ms`,
    metadata: new grpc.Metadata(),
  };
  return (method, next) => {
    const reset = (code: number) => http2StreamOf(next)?.close(code);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let ended = false;
    const stop = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
    const end = () => {
      ended = true;
      stop();
    };
    const arm = () => {
      timer = setTimeout(() => {
        timer = undefined;
        call.sendStatus(late);
        reset(h2.NGHTTP2_NO_ERROR);
      }, opts.receiveTimeoutMs);
      // A pending receive deadline must not keep a shutting-down server alive.
      timer.unref?.();
    };
    // A client-streaming call (the wait Session) may idle between messages for as long as its
    // waits are parked: its deadline runs only while a message is in progress, from the first
    // bytes of a message (seen on the HTTP/2 stream) to the message complete.
    const streaming = method.requestStream;
    const inProgress = () => {
      if (!timer && !ended) arm();
    };
    const call: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(next, {
      start(startNext) {
        startNext({
          onReceiveMetadata(md, mdNext) {
            if (!opts.authorized(md)) {
              authFailed(method.path, call.getPeer());
              // Not passing the metadata on means the handler never asks for the message.
              call.sendStatus({ ...UNAUTHENTICATED, metadata: new grpc.Metadata() });
              // The answer is complete: NO_ERROR asks the client to stop sending the rest.
              reset(h2.NGHTTP2_NO_ERROR);
              return;
            }
            resetters.set(md, () => reset(h2.NGHTTP2_CANCEL));
            const session = http2SessionOf(next);
            if (session) sessions.set(md, session);
            if (!streaming) arm();
            else http2StreamOf(next)?.on("data", inProgress);
            mdNext(md);
          },
          onReceiveMessage(message, messageNext) {
            // The message is complete. (Bytes of the next one that came in the same frame are
            // not timed until more arrive: at most one frame goes untimed.)
            if (streaming) stop();
            messageNext(message);
          },
          onReceiveHalfClose(halfNext) {
            stop();
            halfNext();
          },
          onCancel: end,
        });
      },
      sendStatus(status, statusNext) {
        // However the call ends (an answer, an error, the deadline), its receive timer goes.
        end();
        statusNext(status);
      },
    });
    return call;
  };
}

/** How to reset the stream of an authenticated call, by the metadata object its handler sees as `call.metadata`. */
const resetters = new WeakMap<grpc.Metadata, () => void>();

/**
 * Reset the HTTP/2 stream of a call (RST_STREAM CANCEL), for a handler that must end a call
 * whose client stopped reading: a status cannot reach such a client (it queues behind the
 * unread messages), a reset does, and it frees what was queued. Takes the handler's
 * `call.metadata`; false if the stream could not be reached.
 */
export function resetCall(md: grpc.Metadata): boolean {
  const r = resetters.get(md);
  r?.();
  return r !== undefined;
}

/** The HTTP/2 session (client connection) of each authenticated call, by its metadata object. */
const sessions = new WeakMap<grpc.Metadata, ClosableSession>();
/** One signal per connection, aborted when it closes. */
const closedSignals = new WeakMap<ClosableSession, AbortSignal>();

/** The subset of an HTTP/2 session used here. */
interface ClosableSession {
  readonly closed: boolean;
  readonly destroyed: boolean;
  once(event: "close", f: () => void): unknown;
}

/**
 * A signal aborted when the client connection of the call with this metadata closes: the
 * servicer drops that client's async calls still queued then (nobody is left to read them).
 * Undefined when the connection cannot be reached (it is then never aborted).
 */
export function connectionClosed(md: grpc.Metadata): AbortSignal | undefined {
  const session = sessions.get(md);
  if (!session) return undefined;
  let signal = closedSignals.get(session);
  if (!signal) {
    const ctl = new AbortController();
    if (session.closed || session.destroyed) ctl.abort();
    else session.once("close", () => ctl.abort());
    signal = ctl.signal;
    closedSignals.set(session, signal);
  }
  return signal;
}

function http2SessionOf(call: grpc.ServerInterceptingCallInterface): ClosableSession | undefined {
  const s = (call as unknown as { stream?: { session?: ClosableSession } }).stream?.session;
  return s && typeof s.once === "function" ? s : undefined;
}

/** The subset of an HTTP/2 stream the guard uses. */
interface ResettableStream {
  close(code: number): void;
  on(event: "data", listener: () => void): unknown;
}

/**
 * The HTTP/2 stream under grpc-js's innermost call object (`BaseServerInterceptingCall.stream`
 * in grpc-js 1.14, a private field); undefined when it is not found there.
 */
function http2StreamOf(call: grpc.ServerInterceptingCallInterface): ResettableStream | undefined {
  const s = (call as unknown as { stream?: { close?: unknown; rstCode?: unknown; destroyed?: boolean } }).stream;
  if (!s || typeof s.close !== "function" || typeof (s as { on?: unknown }).on !== "function" || !("rstCode" in s) || s.destroyed) return undefined;
  return s as ResettableStream;
}

/** The status of a call without the right token. */
export const UNAUTHENTICATED: { code: grpc.status; details: string } = { code: grpc.status.UNAUTHENTICATED, details: UNAUTHENTICATED_MESSAGE };

/**
 * Token check in constant time: both sides are hashed first, so `timingSafeEqual` compares
 * equal lengths and the time taken reveals neither the token nor its length. Without a token
 * every call passes.
 */
export function makeAuth(token: string | undefined): Auth {
  if (!token) return () => true;
  const want = sha256(token);
  return (md) => {
    const given = presentedToken(md);
    return timingSafeEqual(sha256(given ?? ""), want) && given !== undefined;
  };
}

/** `authorization: Bearer <token>`, or the `x-as-token` header. */
function presentedToken(md: grpc.Metadata): string | undefined {
  const auth = md.get("authorization")[0];
  if (typeof auth === "string") {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    if (m) return m[1];
  }
  const x = md.get("x-as-token")[0];
  return typeof x === "string" ? x : undefined;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}
