/**
 * Validation of requests from untrusted peers: the kind must be known and every field must
 * have its type, before anything is looked up or decoded.
 */
import { CodecError } from "../core/errors.ts";
import { REQUEST_KINDS, type Request } from "../core/protocol.ts";
import { MAX_OBJECT_ID, isId, isObjectId } from "../core/ids.ts";
import { SplitFrame } from "../core/split-frame.ts";

const MAX_NAME = 256;

/** Check `raw` is a well-formed `Request`; throws INVALID_ARGUMENT otherwise. */
export function validateRequest(raw: unknown): Request {
  if (raw === null || typeof raw !== "object") throw new CodecError("request must be an object");
  const r = raw as Record<string, unknown>;
  if (typeof r.t !== "string" || !REQUEST_KINDS.has(r.t)) throw new CodecError(`unknown request kind ${String(r.t).slice(0, 40)}`);
  switch (r.t) {
    case "create":
      oid(r.oid);
      str(r.cls, "cls");
      bytes(r.args, "args");
      if (r.state !== undefined) bytes(r.state, "state");
      break;
    case "call":
      oid(r.oid);
      str(r.name, "name");
      // A call's arguments received over IPC in parts (see split-frame.ts).
      if (!(r.args instanceof SplitFrame)) bytes(r.args, "args");
      if (r.task !== undefined) id(r.task, "task");
      if (r.timeoutMs !== undefined) num(r.timeoutMs, "timeoutMs");
      if (r.snap !== undefined && typeof r.snap !== "boolean") throw new CodecError("snap must be a boolean");
      if (r.holdMs !== undefined) num(r.holdMs, "holdMs");
      if (r.solo !== undefined && typeof r.solo !== "boolean") throw new CodecError("solo must be a boolean");
      break;
    case "wait":
      id(r.task, "task");
      num(r.timeoutMs, "timeoutMs");
      if (r.fresh !== undefined && typeof r.fresh !== "boolean") throw new CodecError("fresh must be a boolean");
      if (r.keep !== undefined && typeof r.keep !== "boolean") throw new CodecError("keep must be a boolean");
      if (r.snap !== undefined && typeof r.snap !== "boolean") throw new CodecError("snap must be a boolean");
      break;
    case "delete":
    case "describe":
    case "memory":
      oid(r.oid);
      break;
    case "cancel":
    case "release":
      id(r.task, "task");
      break;
    case "next":
      id(r.stream, "stream");
      num(r.max, "max");
      num(r.timeoutMs, "timeoutMs");
      break;
    case "setModelConfigs":
      bytes(r.configs, "configs");
      break;
    case "download":
      if (typeof r.path !== "string" || r.path.length > 4096) throw new CodecError("bad path");
      break;
  }
  return r as unknown as Request;
}

function id(v: unknown, what: string): void {
  if (!isId(v)) throw new CodecError(`${what} must be 32 hex characters`);
}
function oid(v: unknown): void {
  if (!isObjectId(v)) throw new CodecError(`oid must be 1-${MAX_OBJECT_ID} characters of A-Z a-z 0-9 . _ : -`);
}
function str(v: unknown, what: string): void {
  if (typeof v !== "string" || v.length === 0 || v.length > MAX_NAME) throw new CodecError(`${what} must be a short string`);
}
function bytes(v: unknown, what: string): void {
  if (!(v instanceof Uint8Array)) throw new CodecError(`${what} must be bytes`);
}
function num(v: unknown, what: string): void {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new CodecError(`${what} must be a non-negative number`);
}
