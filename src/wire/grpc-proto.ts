/**
 * The gRPC service of `proto/agent_server.proto`, built once per process from the message
 * table of proto-codec.ts (no .proto parsing at run time), and the mapping between
 * protocol.ts messages and the protobuf ones. Shared by the gRPC transport (client) and the
 * gRPC binding (server), so both sides agree by construction. Only ever loaded lazily by
 * those, which load grpc-js.
 */
import type * as grpc from "@grpc/grpc-js";
import { RPCS, decodeMessage, serializeMessage } from "./proto-codec.ts";
import type { Frame } from "../core/split-frame.ts";
import { GRPC_STATUS, type ErrorCode, type WireError } from "../core/errors.ts";
import { REQUEST_TABLE, SOLO, type CallRequest, type Request, type Response } from "../core/protocol.ts";

/** RPC name of each request kind that travels over gRPC (from the one table in protocol.ts). */
export const RPC_OF: Readonly<Partial<Record<Request["t"], string>>> = Object.fromEntries(
  Object.entries(REQUEST_TABLE).flatMap(([t, k]) => (k.rpc === null ? [] : [[t, k.rpc]])),
);

/** `Reply` as proto-loader builds and reads it: exactly one field set. */
export interface WireReply {
  /** Received: one array (a view of the message). Sent: may be split (written in place by proto-codec.ts). */
  value?: Frame;
  snap?: Uint8Array;
  task?: string;
  pending?: Record<string, never>;
  ok?: Record<string, never>;
  error?: { code: string; message: string; remote?: { name: string; message: string; stack?: string }; retryAfterMs?: number };
}

/**
 * Request kinds a `Batch` call may carry. The `BatchItem` field of each is named like the
 * kind, so an item is `{ [req.t]: requestMessage(req) }`.
 */
export const BATCH_KINDS: ReadonlySet<string> = new Set(
  Object.entries(REQUEST_TABLE)
    .filter(([, k]) => k.batch)
    .map(([t]) => t),
);

/** `BatchReply` as proto-loader builds and reads it (a 0 index is absent on the wire). */
export interface WireBatchReply {
  answers?: Array<{ index?: number; reply?: WireReply }>;
}

/** Largest chunk a Download stream carries. */
export const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;

/** Room for protobuf framing around a codec frame of `maxMessageBytes`. */
export const FRAMING_HEADROOM_BYTES = 64 * 1024;

let service: grpc.ServiceDefinition | undefined;

/** The AgentServer service definition (paths `/actorscope.AgentServer/<Rpc>`). */
export function agentServerService(): grpc.ServiceDefinition {
  if (service) return service;
  // camelCase fields (timeout_ms → timeoutMs) match protocol.ts; absent fields stay absent,
  // so an optional field's presence survives and nothing is defaulted behind our back.
  const def: Record<string, grpc.MethodDefinition<object, object> & { originalName: string }> = {};
  for (const [name, req, res, requestStream, responseStream] of RPCS) {
    def[name] = {
      path: `/actorscope.AgentServer/${name}`,
      requestStream,
      responseStream,
      // Messages holding split frames go to grpc-js as deferred messages: it copies them into
      // its own framed buffer, which is then the one copy of each large leaf (proto-codec.ts).
      requestSerialize: (m: object) => serializeMessage(req, m),
      requestDeserialize: (b: Buffer) => decodeMessage(req, b),
      responseSerialize: (m: object) => serializeMessage(res, m),
      responseDeserialize: (b: Buffer) => decodeMessage(res, b),
      originalName: name[0]!.toLowerCase() + name.slice(1),
    };
  }
  service = def as grpc.ServiceDefinition;
  return service;
}

/** The protobuf request message of a protocol request: its fields without `t`. */
export function requestMessage(req: Request): object {
  const { t: _t, ...fields } = req;
  if (req.t === "call") {
    // An async call's sharing state decides `solo` now, as the request is written.
    const s = req[SOLO];
    if (s !== undefined) {
      if (!s.shared) (fields as CallRequest).solo = s.sealed = true;
    }
  }
  // uint32 on the wire: a longer deadline would wrap around to a short one.
  const f = fields as { timeoutMs?: number };
  if (f.timeoutMs !== undefined && f.timeoutMs > MAX_UINT32) f.timeoutMs = MAX_UINT32;
  return fields;
}

const MAX_UINT32 = 0xffff_ffff;

/** protocol.ts `Response` → protobuf `Reply`. */
export function toReply(r: Response): WireReply {
  switch (r.t) {
    case "value":
      return r.snap === undefined ? { value: r.value } : { value: r.value, snap: r.snap };
    case "task":
      return { task: r.task };
    case "pending":
      return { pending: {} };
    case "ok":
      return { ok: {} };
    case "error": {
      const e: WireReply["error"] = { code: r.error.code, message: r.error.message };
      const rem = r.error.remote;
      if (rem) e.remote = rem.stack === undefined ? { name: rem.name, message: rem.message } : { name: rem.name, message: rem.message, stack: rem.stack };
      if (r.error.retryAfterMs !== undefined) e.retryAfterMs = r.error.retryAfterMs;
      return { error: e };
    }
  }
}

/** protobuf `Reply` → protocol.ts `Response`; undefined for a reply with nothing set. */
export function fromReply(r: WireReply): Response | undefined {
  if (r.value !== undefined) return r.snap === undefined ? { t: "value", value: r.value } : { t: "value", value: r.value, snap: r.snap };
  if (r.task !== undefined) return { t: "task", task: r.task };
  if (r.ok !== undefined) return { t: "ok" };
  if (r.pending !== undefined) return { t: "pending" };
  if (r.error !== undefined) {
    const code = (Object.hasOwn(GRPC_STATUS, r.error.code) ? r.error.code : "UNKNOWN") as ErrorCode;
    const w: WireError = { code, message: String(r.error.message ?? "") };
    const rem = r.error.remote;
    if (rem) w.remote = { name: String(rem.name ?? "Error"), message: String(rem.message ?? ""), ...(rem.stack === undefined ? {} : { stack: String(rem.stack) }) };
    const after = Number(r.error.retryAfterMs);
    if (after > 0 && Number.isFinite(after)) w.retryAfterMs = Math.min(after, 60_000);
    return { t: "error", error: w };
  }
  return undefined;
}

/** `host:port` as a gRPC target (IPv6 literals bracketed). */
export function grpcTarget(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** gRPC status number → our code name. */
export const CODE_OF_STATUS: ReadonlyMap<number, ErrorCode> = new Map(
  (Object.entries(GRPC_STATUS) as Array<[ErrorCode, number]>).map(([k, v]) => [v, k]),
);
