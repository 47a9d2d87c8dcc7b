/**
 * The wire protocol: every request a client sends to an agent server and every answer, as
 * one tagged union. Both transports carry exactly these messages — Bun IPC as structured
 * clones of these objects, gRPC as the protobuf messages of `proto/agent_server.proto`
 * (one RPC per request kind). Values inside are codec frames (`Uint8Array`, see codec.ts).
 * The field-by-field description is in `docs/protocol.md`.
 */
import type { WireError } from "./errors.ts";

/** Create an object of a registered class, keeping the caller's object id. */
export interface CreateRequest {
  t: "create";
  /** Object id chosen by the client (generated: 32 hex; user-chosen: see `isObjectId`); the remote copy keeps it. */
  oid: string;
  /** Registered class name. */
  cls: string;
  /** Codec frame of the constructor argument array. */
  args: Uint8Array;
}

/**
 * Call a method or read an attribute. A sync method or attribute answers `value`; an async
 * method answers `task` at once and its result is fetched with `wait`.
 */
export interface CallRequest {
  t: "call";
  oid: string;
  /** Method or attribute name; `_`-prefixed and prototype names are refused. */
  name: string;
  /** Codec frame of the argument array. */
  args: Uint8Array;
  /**
   * Task id for an async method, chosen by the client (random, 32 hex) so a reference to the
   * result exists before the server answers. Ignored for sync methods.
   */
  task?: string;
  /** Per-call deadline in milliseconds; the server drops the call if it cannot start in time. */
  timeoutMs?: number;
}

/** Wait for the result of an async task (server-side, event-driven long poll). */
export interface WaitRequest {
  t: "wait";
  task: string;
  /** How long the server may hold the wait before answering `pending` (not ready). */
  timeoutMs: number;
  /**
   * The task may not be registered yet (its call is still on its way, possibly on another
   * connection): wait for it to appear instead of answering NOT_FOUND at once.
   */
  fresh?: boolean;
  /**
   * Reading the result does not make it evictable: the reader handed references to it to
   * other servers, which still need it.
   */
  keep?: boolean;
}

/**
 * The owner of a task dropped every AsyncResult for it unread (and handed no reference to
 * it to anyone): the server may free the result now, or as soon as it finishes.
 */
export interface ReleaseRequest {
  t: "release";
  task: string;
}

/** Remove one object from the server. Deleting an absent object is a no-op. */
export interface DeleteRequest {
  t: "delete";
  oid: string;
}

/** Ask for an object's class and method table (used by `connect()`). */
export interface DescribeRequest {
  t: "describe";
  oid: string;
}

/** Read an agent's memory. */
export interface MemoryRequest {
  t: "memory";
  oid: string;
}

/** Replace the server's model configs (codec frame of the config list). */
export interface SetModelConfigsRequest {
  t: "setModelConfigs";
  configs: Uint8Array;
}

/** Read a file under the server's file dir. */
export interface DownloadRequest {
  t: "download";
  path: string;
}

/** Cancel a running call by its task id. */
export interface CancelRequest {
  t: "cancel";
  task: string;
}

/** Management requests without arguments. */
export interface SimpleRequest {
  t: "alive" | "stop" | "deleteAll" | "list" | "info";
}

/** Everything a client can ask of a server. */
export type Request =
  | CreateRequest
  | CallRequest
  | WaitRequest
  | DeleteRequest
  | DescribeRequest
  | MemoryRequest
  | SetModelConfigsRequest
  | DownloadRequest
  | CancelRequest
  | ReleaseRequest
  | SimpleRequest;

/** Every request kind, for validation of untrusted input. */
export const REQUEST_KINDS: ReadonlySet<string> = new Set([
  "create", "call", "wait", "delete", "describe", "memory", "setModelConfigs", "download", "cancel", "release",
  "alive", "stop", "deleteAll", "list", "info",
]);

/** A value answer: a codec frame. */
export interface ValueResponse {
  t: "value";
  value: Uint8Array;
}

/** An async method was accepted under this task id. */
export interface TaskResponse {
  t: "task";
  task: string;
}

/** A `wait` ran out before the result landed; ask again (per the retry strategy). */
export interface PendingResponse {
  t: "pending";
}

/** Done, nothing to return. */
export interface OkResponse {
  t: "ok";
}

/** The request failed; `error.code` is a gRPC status name. */
export interface ErrorResponse {
  t: "error";
  error: WireError;
}

/** Every answer a server gives. */
export type Response = ValueResponse | TaskResponse | PendingResponse | OkResponse | ErrorResponse;

/** A class's remote surface, as `describe` reports it. */
export interface ClassInfo {
  /** Registered class name. */
  cls: string;
  /** Public method names. */
  methods: string[];
  /** The subset of `methods` that are async (`@asyncFunc`). */
  async: string[];
}

/** One entry of `getAgentList()`. */
export interface AgentInfo {
  id: string;
  cls: string;
  /** The agent's `name`, when it has a string one. */
  name?: string;
  sysPrompt?: string;
  model?: { configName: string; modelType?: string };
}

/** What `getServerInfo()` reports. Answered at once; cpu is the share used since the last ask. */
export interface ServerInfo {
  pid: number;
  id: string;
  /** CPU use of the server process in percent since the previous call (or process start). */
  cpu: number;
  /** Resident memory in MiB. */
  mem: number;
  /** Objects held. */
  size: number;
  /** Concurrent async calls allowed. */
  capacity: number;
  /** Async calls running or queued. */
  pending: number;
  /** Results held by the pool. */
  results?: number;
}

/** Random 32-hex id (object ids, task ids). */
export function randomId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let s = "";
  for (let i = 0; i < 16; i++) s += HEX[b[i]!];
  return s;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** True for a 32-hex id: task ids, and the object ids this library generates. */
export function isId(s: unknown): s is string {
  return typeof s === "string" && s.length === 32 && /^[0-9a-f]{32}$/.test(s);
}

/** Longest object id a user may choose. */
export const MAX_OBJECT_ID = 128;

/**
 * True for an object id: 1–128 characters of `[A-Za-z0-9._:-]`. Generated ids are 32 hex;
 * users may choose readable ones (`createAgent(…, "alice")`, as AgentScope allows). The
 * alphabet keeps ids safe in log lines, Redis keys and URLs without escaping.
 */
export function isObjectId(s: unknown): s is string {
  return typeof s === "string" && s.length > 0 && s.length <= MAX_OBJECT_ID && /^[A-Za-z0-9._:-]+$/.test(s);
}
