/**
 * Checks on what a server answers to management requests (`RpcClient`, a `ServerGroup`'s
 * load probes). An answer of the wrong kind, or a value of the wrong shape, means the two
 * ends disagree on the protocol: that is an INTERNAL error naming the request, never a
 * deadline, a dead server or bad input of the caller's.
 */
import { AgentServerError, errorFromWire } from "../core/errors.ts";
import type { AgentInfo, Request, Response, ServerInfo } from "../core/protocol.ts";

/** Where a server is, for errors. */
type Where = { host: string; port: number | undefined };

/** A protocol error (INTERNAL): `server` answered something this client cannot take. */
export function protocolError(what: string, where: Where): AgentServerError {
  const at = where.port === undefined ? where.host : `${where.host}:${where.port}`;
  return new AgentServerError(`protocol error: ${at} ${what}`, { ...where, code: "INTERNAL" });
}

/** `res` if it is of kind `want`; the server's error if it is one; else a protocol error. */
export function answerOf<K extends Response["t"]>(req: Request, res: Response, want: K, where: Where): Extract<Response, { t: K }> {
  if (res.t === want) return res as Extract<Response, { t: K }>;
  if (res.t === "error") throw errorFromWire(res.error, where);
  throw protocolError(`answered ${res.t} to ${req.t} (expected ${want})`, where);
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;

/** A decoded `info` answer, checked to be an object with the counts placement relies on (`size`, `pending`). */
export function serverInfoOf(v: unknown, where: Where): ServerInfo {
  const i = v as Partial<ServerInfo> | null;
  if (i === null || typeof i !== "object" || !isCount(i.size) || !isCount(i.pending)) {
    throw protocolError("sent a malformed server info", where);
  }
  return i as ServerInfo;
}

/** A decoded `list` answer, checked to be a list of AgentInfo. */
export function agentListOf(v: unknown, where: Where): AgentInfo[] {
  if (!Array.isArray(v) || !v.every((a) => a !== null && typeof a === "object" && typeof a.id === "string" && typeof a.cls === "string")) {
    throw protocolError("sent a malformed agent list", where);
  }
  return v as AgentInfo[];
}
