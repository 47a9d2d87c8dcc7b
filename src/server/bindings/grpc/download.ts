/**
 * The `Download` RPC of the gRPC binding: a file under the server's file dir, streamed from
 * disk in chunks. Each chunk is read only after the previous one was handed to the HTTP/2
 * stream, so a download holds one chunk and a file handle however slowly its client reads;
 * a client that stops reading for `stallMs` has its stream reset. At most `maxConcurrent`
 * downloads run at once; past that a download answers RESOURCE_EXHAUSTED at once.
 *
 * Confinement is `openConfined`'s (files.ts), the same checks the IPC path uses.
 */
import type * as grpc from "@grpc/grpc-js";
import { ResourceExhaustedError, errorToWire } from "../../../core/errors.ts";
import { toReply, type WireReply } from "../../../wire/grpc-proto.ts";
import { openConfined } from "../../files.ts";
import type { Servicer } from "../../servicer.ts";
import { validateRequest } from "../../validate.ts";
import { resetCall } from "./guard.ts";

/** Bytes per message of a Download stream (well under any message limit). */
export const CHUNK_BYTES = 256 * 1024;

/** What the binding lends the handler. */
export interface DownloadDeps {
  servicer: Servicer;
  /** Largest file served. */
  maxBytes: number;
  /** Downloads served at once. */
  maxConcurrent: number;
  /** Longest wait for a client to take a chunk before its stream is reset, ms. */
  stallMs: number;
  /** A signal that aborts when the client cancels the call. */
  cancelSignal(call: DownloadCall): { signal: AbortSignal; end(): void };
}

type DownloadCall = grpc.ServerWritableStream<{ path?: string }, WireReply>;

/** The handler of `rpc Download(DownloadRequest) returns (stream Reply)`. */
export function downloadHandler(deps: DownloadDeps): grpc.handleServerStreamingCall<{ path?: string }, WireReply> {
  let active = 0;
  return (call) => {
    const c = deps.cancelSignal(call);
    const finish = (reply?: WireReply) => {
      if (reply && !c.signal.aborted) call.write(reply);
      c.end();
      call.end();
    };
    if (active >= deps.maxConcurrent) {
      const e = new ResourceExhaustedError(`${active} downloads are in progress, the most this server serves at once; try again later`);
      return finish(toReply({ t: "error", error: errorToWire(e) }));
    }
    active++;
    send(call, deps, c.signal)
      .then(
        () => finish(),
        (e: unknown) => finish(toReply({ t: "error", error: errorToWire(e, { hideStacks: deps.servicer.opts.hideStacks }) })),
      )
      .finally(() => active--);
  };
}

/** Stream the file `call.request.path` names; rejects (before the first chunk) when it cannot be served. */
async function send(call: DownloadCall, deps: DownloadDeps, signal: AbortSignal): Promise<void> {
  const req = validateRequest({ ...call.request, t: "download" });
  if (req.t !== "download") return;
  const { handle, size } = await openConfined(deps.servicer.opts.fileDir, req.path, deps.maxBytes);
  try {
    // One buffer per download: a chunk is serialised (copied) by grpc-js before `written` resolves.
    const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(size, 1)));
    let at = 0;
    // At least one message, so an empty file is an empty value and not "no answer".
    do {
      if (signal.aborted) return;
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, size - at), at);
      if (!(await written(call, { value: buf.subarray(0, bytesRead) }, signal, deps.stallMs))) return;
      at += bytesRead;
      // A file that shrank since it was opened ends here.
      if (bytesRead === 0) break;
    } while (at < size);
  } finally {
    await handle.close();
  }
}

/**
 * Write one message and wait until grpc-js has handed it to the stream. False when the client
 * cancelled, or took nothing for `stallMs` (its stream is then reset: a status would queue
 * behind the unread chunks and never arrive).
 */
function written(call: DownloadCall, msg: WireReply, signal: AbortSignal, stallMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(stall);
      signal.removeEventListener("abort", cancelled);
      resolve(ok);
    };
    const cancelled = () => done(false);
    const stall = setTimeout(() => {
      resetCall(call.metadata);
      done(false);
    }, stallMs);
    signal.addEventListener("abort", cancelled, { once: true });
    call.write(msg, () => done(true));
  });
}
