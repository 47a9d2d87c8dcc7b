/**
 * `connect()`: a proxy to an object that already lives on an independent server, knowing
 * only its id. The object's methods come from the server (`describe`), so the caller needs
 * neither its class nor its module.
 */
import { DEFAULTS } from "../core/defaults.ts";
import { connectionFor } from "./connections.ts";
import { CodecError } from "../core/errors.ts";
import { type ClassInfo } from "../core/protocol.ts";
import { MAX_OBJECT_ID, isObjectId } from "../core/ids.ts";
import { makeRemote } from "./proxy.ts";
import { type Remote, type RemoteState } from "./proxy-state.ts";
import { decodeFrom } from "./proxy.ts";
import { DEFAULT_RETRY } from "./retry.ts";
import type { ClientTlsOption } from "../core/tls.ts";

/** Where the object is. */
export interface ConnectTarget {
  host: string;
  port: number;
  /** The object's id: 32 hex when generated, or the 1–128 characters of `[A-Za-z0-9._:-]` it was created with. */
  oid: string;
  /** Token the server requires, if any. */
  token?: string;
  /** TLS for the server (see `RpcClientOptions.tls`). */
  tls?: ClientTlsOption;
}

/**
 * A proxy to the object `oid` on the server at `host:port`. Returns at once; calls made before
 * the server described the object queue behind that answer, and if the object does not exist
 * every use rejects with NOT_FOUND. The proxy does not own the object: disposing it leaves
 * the object on the server (`delete()` removes it).
 *
 * @example
 * const agent = connect<WebAgent>({ host: "localhost", port: 12310, oid });
 * const reply = await agent.reply(new Msg({ name: "user", content: "hi" }));
 */
export function connect<T = unknown>(to: ConnectTarget): Remote<T> {
  if (to === null || typeof to !== "object") throw new TypeError("connect() needs { host, port, oid }");
  const { host, port, oid, token, tls } = to;
  if (typeof host !== "string" || !host) throw new TypeError("connect(): host must be a non-empty string");
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`connect(): port must be an integer in 1..65535, not ${port}`);
  if (!isObjectId(oid)) throw new TypeError(`connect(): oid must be 1-${MAX_OBJECT_ID} characters of A-Z a-z 0-9 . _ : -, not ${JSON.stringify(oid)?.slice(0, 140)}`);
  const conn = connectionFor({ host, port }, { ...(token === undefined ? {} : { token }), ...(tls === undefined ? {} : { tls }) });
  const st: RemoteState = { oid, conn, ready: Promise.resolve(), retry: DEFAULT_RETRY, maxWaitMs: DEFAULTS.maxTimeoutSeconds * 1000, host, port };
  st.ready = conn.value({ t: "describe", oid }).then((bytes) => {
    const info = decodeFrom(bytes) as ClassInfo;
    if (!info || typeof info.cls !== "string" || !Array.isArray(info.methods) || !Array.isArray(info.async)) {
      throw new CodecError(`bad description of object ${oid}`, conn.where);
    }
    st.info = { ...info, methodSet: new Set(info.methods), asyncSet: new Set(info.async) };
  });
  return makeRemote<T>(st);
}
