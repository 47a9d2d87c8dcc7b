/**
 * The IPC binding of the servicer, inside a child server: request frames from the parent go
 * to `Servicer.handle`, answers go back with the same request number. Malformed frames are
 * answered with an error when they carry a number, and dropped otherwise; they never stop
 * the server.
 */
import type { IpcFrame } from "../../rpc/transports/ipc.ts";
import type { Servicer } from "../servicer.ts";
import type { Response } from "../../rpc/protocol.ts";

/** Serve `servicer` on this process's IPC channel. */
export function bindIpc(servicer: Servicer, send: (f: IpcFrame) => void, listen?: () => Promise<Response>): (frame: unknown) => void {
  const running = new Map<number, AbortController>();
  return (frame: unknown) => {
    if (frame === null || typeof frame !== "object") return;
    const f = frame as Partial<IpcFrame> & { i?: unknown };
    if (typeof f.i !== "number" || !Number.isSafeInteger(f.i)) return;
    const i = f.i;
    if (f.k === "x") {
      running.get(i)?.abort();
      return;
    }
    if (f.k !== "q") return;
    const req = (f as { r?: { t?: unknown } }).r;
    // `listen` is a parent-only control request: it exists on IPC, never on the network.
    if (listen && req?.t === "listen") {
      listen().then((r) => send({ k: "a", i, r }));
      return;
    }
    const ctl = new AbortController();
    running.set(i, ctl);
    servicer.handle(req, ctl.signal).then((r) => {
      running.delete(i);
      try {
        send({ k: "a", i, r });
      } catch {
        // Parent gone: the disconnect handler ends this process.
      }
    });
  };
}
