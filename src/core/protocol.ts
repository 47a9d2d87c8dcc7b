/**
 * The wire protocol: every request a client sends to an agent server and every answer, as
 * one tagged union. Both transports carry exactly these messages — Bun IPC as structured
 * clones of these objects, gRPC as the protobuf messages of `proto/agent_server.proto`
 * (one RPC per request kind). Values inside are codec frames (`Uint8Array`, see codec.ts; a
 * call's arguments and a value answer may be a `SplitFrame` while they are being sent).
 * The field-by-field description is in `docs/protocol.md`.
 */
import type { WireError } from "./errors.ts";
import type { Frame } from "./split-frame.ts";

/** Create an object of a registered class, keeping the caller's object id. */
export interface CreateRequest {
  t: "create";
  /** Object id chosen by the client (generated: 32 hex; user-chosen: see `isObjectId`); the remote copy keeps it. */
  oid: string;
  /** Registered class name. */
  cls: string;
  /** Codec frame of the constructor argument array. */
  args: Uint8Array;
  /**
   * Supervision: codec frame of the object's last snapshot. The server builds the object,
   * then calls its `restore(state)` before answering; a throwing `restore` fails the create.
   */
  state?: Uint8Array;
  /** W3C trace context of the caller's active span (see `Traced`). */
  trace?: string;
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
  /** Codec frame of the argument array (split: see split-frame.ts). */
  args: Frame;
  /**
   * Task id for an async method, chosen by the client (random, 32 hex) so a reference to the
   * result exists before the server answers. Ignored for sync methods.
   */
  task?: string;
  /** Per-call deadline in milliseconds; the server drops the call if it cannot start in time. */
  timeoutMs?: number;
  /**
   * Supervision: answer a sync call's value with the object's `snapshot()` (`ValueResponse.snap`),
   * and remember an async call's object so the `wait` that delivers its result can (`WaitRequest.snap`).
   */
  snap?: boolean;
  /** W3C trace context of the caller's active span (see `Traced`). */
  trace?: string;
  /**
   * Async methods: if the task succeeds within this many ms of starting, answer `value` (its
   * result, now read) instead of `task`, so a fast task costs one round trip and no `wait`.
   * The answer comes when the task is done or the hold ends; a task queued for a capacity slot
   * is held for at most 5× this from its arrival. Ignored with `snap` and by pools that cannot
   * mark a result read at once (Redis).
   */
  holdMs?: number;
  /**
   * With `holdMs`: no reference to this task went out before the request did, and none will
   * before its answer (the client waits for the answer instead). A value answered inline is
   * then not kept in the result pool at all — nobody else can ask for it. Set by the gRPC
   * serializer from the call's `SOLO` state; other transports leave it out (the result is kept).
   */
  solo?: boolean;
  /** Client side only, never on the wire: the call's sharing state, read when it is serialized. */
  [SOLO]?: SoloState;
}

/** Key of a call request's client-side sharing state (`CallRequest[SOLO]`). */
export const SOLO = Symbol("actorscope.solo");

/**
 * Whether an async call's task was referenced before its request was serialized. The
 * serializer sets `sealed` when it sends the call `solo`; a reference made after that must
 * wait for the call's answer (and then carries the value).
 */
export interface SoloState {
  shared?: boolean;
  sealed?: boolean;
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
  /** Supervision: a result answer also carries the task's object's `snapshot()` (`ValueResponse.snap`). */
  snap?: boolean;
  /** W3C trace context of the caller's active span (see `Traced`). */
  trace?: string;
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

/**
 * Pull the next items of a stream (the call of a stream method answered `task` with the
 * stream's id). Answered with a `value` frame of a `StreamBatch` holding the items ready (at
 * most `max`), `pending` when none came within the hold, or `error`: the generator threw
 * (after every item before the error was pulled), or NOT_FOUND (finished, cancelled, expired).
 */
export interface NextRequest {
  t: "next";
  /** Stream id: the task id the client chose for the stream method's call. */
  stream: string;
  /** Most items the puller takes in this answer. */
  max: number;
  /** How long the server may hold the pull when no item is ready (capped by `maxTimeoutSeconds`). */
  timeoutMs: number;
  /** W3C trace context of the caller's active span (see `Traced`). */
  trace?: string;
}

/** What a `next` answer's value frame holds: the items, in order, and whether the stream ended. */
export interface StreamBatch {
  /** Items produced, oldest first (codec values). */
  i: unknown[];
  /** Set when the generator returned after these items: nothing more will come. */
  end?: true;
}

/** Cancel a running call by its task id (a stream by its stream id: its generator's `return()` runs). */
export interface CancelRequest {
  t: "cancel";
  task: string;
}

/**
 * IPC only, parent → child: open the child's loopback gRPC listener (once) and answer its
 * address, so network servers can reach the child's objects. Never accepted from a network peer.
 */
export interface ListenRequest {
  t: "listen";
}

/**
 * Callbacks, server → caller (the reverse direction): call a function or an object's method
 * that the caller handed out with `callback()`. Travels up a child's IPC link (relayed by
 * parents like any child request) or down the caller's `Callbacks` stream; never accepted by
 * a server's servicer. Answered like a sync call: `value` (codec frame of the return) or `error`.
 */
export interface CallbackCallRequest {
  t: "cbcall";
  /** Callback id (32 hex, chosen by its owner; unguessable). */
  id: string;
  /** Method name when the callback is an object; absent for a function. */
  m?: string;
  /** Codec frame of the argument array. */
  args: Uint8Array;
  /** Child → parent only: forward down the parent's inbound callback link of this id (an isolated agent's reference). */
  via?: string;
}

/**
 * The holder dropped its stub of a callback (disposed or garbage collected): `n` is how many
 * times it had received it, so the owner's count of handouts stays exact across races.
 */
export interface CallbackDropRequest {
  t: "cbdrop";
  id: string;
  n: number;
  /** As in `CallbackCallRequest`. */
  via?: string;
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
  | NextRequest
  | ReleaseRequest
  | ListenRequest
  | CallbackCallRequest
  | CallbackDropRequest
  | SimpleRequest;

/**
 * The optional `trace` field of the kinds marked `trace` in REQUEST_TABLE: sent only when an
 * OpenTelemetry span is active at the call site (no bytes otherwise). It holds the W3C
 * `traceparent` header, then, if the span has one, a space and the `tracestate` header. The
 * server's span for the request is a child of it (see core/trace-context.ts).
 */
export type Traced = { trace?: string };

/** How one request kind travels. */
export interface RequestKind {
  /** Its gRPC method (`proto/agent_server.proto`), or null for a kind that exists on IPC only. */
  readonly rpc: string | null;
  /** May ride a `Batch` call (and a wait `Session`) with other requests. */
  readonly batch: boolean;
  /** Carries the caller's trace context (`trace`, see `Traced`) when a span is active. */
  readonly trace: boolean;
}

/**
 * Every request kind, declared once: the `Request` union above, the gRPC method names
 * (`wire/grpc-proto.ts`), the kinds a server accepts from peers (`REQUEST_KINDS`) and the
 * table of `docs/protocol.md` all match this (a test checks the doc and the proto).
 */
export const REQUEST_TABLE = {
  create: { rpc: "Create", batch: true, trace: true },
  call: { rpc: "Call", batch: true, trace: true },
  wait: { rpc: "Wait", batch: true, trace: true },
  delete: { rpc: "Delete", batch: true, trace: false },
  describe: { rpc: "Describe", batch: true, trace: false },
  cancel: { rpc: "Cancel", batch: true, trace: false },
  release: { rpc: "Release", batch: true, trace: false },
  next: { rpc: "Next", batch: true, trace: true },
  deleteAll: { rpc: "DeleteAll", batch: false, trace: false },
  list: { rpc: "List", batch: false, trace: false },
  info: { rpc: "Info", batch: false, trace: false },
  alive: { rpc: "Alive", batch: false, trace: false },
  stop: { rpc: "Stop", batch: false, trace: false },
  memory: { rpc: "Memory", batch: false, trace: false },
  setModelConfigs: { rpc: "SetModelConfigs", batch: false, trace: false },
  download: { rpc: "Download", batch: false, trace: false },
  listen: { rpc: null, batch: false, trace: false },
  cbcall: { rpc: null, batch: false, trace: false },
  cbdrop: { rpc: null, batch: false, trace: false },
} as const satisfies Record<Request["t"], RequestKind>;

/** Request kinds a server accepts from any peer (all but the IPC-only ones). */
export const REQUEST_KINDS: ReadonlySet<string> = new Set(
  Object.entries(REQUEST_TABLE)
    .filter(([, k]) => k.rpc !== null)
    .map(([t]) => t),
);

/** A value answer: a codec frame. */
export interface ValueResponse {
  t: "value";
  /** Split only while it is being written out (see split-frame.ts); a kept answer holds one array. */
  value: Frame;
  /**
   * Supervision, only when the request asked (`snap`) and the object defines `snapshot()`:
   * codec frame of its snapshot, taken after the call completed.
   */
  snap?: Uint8Array;
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
  /** The subset of `methods` that stream (`async *` methods, `@streamFunc`). */
  streams?: string[];
}

/** One entry of `getAgentList()`. */
export interface AgentInfo {
  id: string;
  cls: string;
  /** The agent's `name`, when it has a string one. */
  name?: string;
  sysPrompt?: string;
  model?: { configName: string; modelType?: string };
  /** Supervised agents (a server started with `--isolate`): restarts after a crash so far. */
  restarts?: number;
  /** Why the last restart happened (e.g. "child server … exited (code 3)"). */
  lastRestartReason?: string;
  /** Set once the agent is dead for good (restart budget spent): why. */
  dead?: string;
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
  /** `Date.now()` when the server started; calls answered, failed, and per second lately; restarts. */
  startedAt?: number;
  calls?: number;
  errors?: number;
  callRate?: number;
  errorRate?: number;
  restarts?: number;
}
