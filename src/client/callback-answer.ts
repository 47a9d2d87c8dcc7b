/**
 * The owner's side of a callback call: a `cbcall` or `cbdrop` that arrived over link `key`
 * (a Callbacks stream, a child's IPC link, this child's parent link) is checked, run and
 * answered. Never rejects: every failure is an `error` answer, so the server's stub settles.
 */
import { CodecError, NotFoundError, UnimplementedError, errorToWire } from "../core/errors.ts";
import { isId } from "../core/ids.ts";
import type { Response } from "../core/protocol.ts";
import { callbacks } from "./callback-table.ts";
import { decodeFrom } from "./proxy.ts";
import { encodeArgsWhenReady } from "./ref-encode.ts";

/** Answer a callback request that came over link `key` (validated here: it comes from a peer). */
export async function answerCallback(raw: unknown, key: string): Promise<Response> {
  try {
    const r = raw as Record<string, unknown> | null;
    if (r === null || typeof r !== "object" || !isId(r.id)) throw new CodecError("bad callback request");
    if (r.t === "cbdrop") {
      const n = r.n;
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) throw new CodecError("bad callback drop count");
      callbacks.drop(r.id, key, n);
      return { t: "ok" };
    }
    if (r.t !== "cbcall" || !(r.args instanceof Uint8Array)) throw new CodecError("bad callback request");
    if (r.m !== undefined && (typeof r.m !== "string" || r.m.length > 256)) throw new CodecError("bad callback method name");
    const e = callbacks.target(r.id, key);
    if (!e) throw new NotFoundError("no such callback here: it was released, dropped, or never handed to this peer", { host: "callback", port: undefined });
    const args = decodeFrom(r.args);
    if (!Array.isArray(args)) throw new CodecError("callback arguments must be an array");
    let out: unknown;
    if (r.m === undefined) {
      if (typeof e.target !== "function") throw new UnimplementedError("this callback is an object: call one of its methods", { host: "callback", port: undefined });
      out = await (e.target as (...a: unknown[]) => unknown)(...args);
    } else {
      if (!e.methods?.has(r.m)) throw new UnimplementedError(`this callback has no method ${JSON.stringify(r.m.slice(0, 64))}`, { host: "callback", port: undefined });
      out = await (e.target as Record<string, (...a: unknown[]) => unknown>)[r.m]!(...args);
    }
    return { t: "value", value: await encodeArgsWhenReady(out, key.startsWith("link:") ? "net" : "ipc") };
  } catch (e) {
    return { t: "error", error: errorToWire(e) };
  }
}
