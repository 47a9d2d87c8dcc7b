/**
 * The IPC binding of the servicer, inside a child server: request frames from the parent go
 * to `Servicer.handle`, answers go back with the same request number — as binary frames where
 * they fit, batched while other requests are still running (see `ipc-frame.ts`); the last
 * answer of a burst goes out at once. Malformed frames are answered with an error when they
 * carry a number, and dropped otherwise; they never stop the server.
 */
import type { IpcFrame } from "../../client/transports/ipc.ts";
import { FrameSender, decodeFrames, encodeFrame, splitForIpc, splitFromIpc } from "../../wire/ipc-frame.ts";
import type { Servicer } from "../servicer.ts";
import type { Response } from "../../core/protocol.ts";

/** Serve `servicer` on this process's IPC channel. */
export function bindIpc(
  servicer: Servicer,
  send: (f: IpcFrame) => void,
  listen?: () => Promise<Response>,
  /** Callback requests (`cbcall`, `cbdrop`): answered by this process's callback table, never by the servicer. */
  callbacks?: (req: unknown) => Promise<Response>,
): (frame: unknown) => void {
  const running = new Map<number, AbortController>();
  const out = new FrameSender((f) => send(f as IpcFrame));
  const answer = (i: number, r: Response) => {
    try {
      const bin = encodeFrame("a", i, r);
      if (!bin) return out.now({ k: "a", i, r: splitForIpc(r) });
      out.queue(bin, false);
      // Nothing else to wait for: the parent is waiting for exactly this.
      if (running.size === 0) out.flush();
    } catch {
      // Parent gone: the disconnect handler ends this process.
    }
  };
  const one = (frame: unknown) => {
    if (frame === null || typeof frame !== "object") return;
    const f = frame as Partial<Exclude<IpcFrame, Uint8Array>> & { i?: unknown };
    if (typeof f.i !== "number" || !Number.isSafeInteger(f.i)) return;
    const i = f.i;
    if (f.k === "x") {
      running.get(i)?.abort();
      return;
    }
    if (f.k !== "q") return;
    const req = (f as { r?: { t?: unknown } }).r;
    splitFromIpc(req);
    // `listen` is a parent-only control request: it exists on IPC, never on the network.
    if (listen && req?.t === "listen") {
      listen().then((r) => answer(i, r));
      return;
    }
    if (callbacks && (req?.t === "cbcall" || req?.t === "cbdrop")) {
      callbacks(req).then((r) => answer(i, r));
      return;
    }
    const ctl = new AbortController();
    running.set(i, ctl);
    servicer.handle(req, ctl.signal).then((r) => {
      running.delete(i);
      answer(i, r);
    });
  };
  return (raw: unknown) => {
    if (raw instanceof Uint8Array) for (const f of decodeFrames(raw) ?? []) one(f);
    else one(raw);
  };
}
