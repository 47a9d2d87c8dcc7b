/**
 * One error tree for every failure actorscope reports. Each class carries a stable `code`
 * named after the gRPC status it corresponds to, so callers can switch on `err.code`
 * whichever transport (Bun IPC or gRPC) carried the call.
 */

/** gRPC status names used as stable error codes. */
export type ErrorCode =
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "UNAUTHENTICATED";

/** Numeric gRPC status for each code (used by the gRPC binding). */
export const GRPC_STATUS: Record<ErrorCode, number> = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

/** What a remote exception looked like where it was thrown. */
export interface RemoteErrorInfo {
  /** The remote error's `name`, e.g. `"TypeError"` or a user class name. */
  name: string;
  message: string;
  /** The remote stack, unless the server hides stacks. */
  stack?: string;
}

/** Where an error happened and why. */
export interface AgentServerErrorOptions {
  host?: string;
  port?: number | undefined;
  code?: ErrorCode;
  cause?: unknown;
}

/**
 * Base of every actorscope error: a failure talking to, or reported by, an agent server.
 * `code` is a gRPC status name and never changes for a given kind of failure.
 */
export class AgentServerError extends Error {
  /** Stable gRPC-style status name. */
  readonly code: ErrorCode;
  /**
   * Host of the server involved: `"child:<id>"` for a child server, a relayed one included;
   * the host name or address otherwise (`""` when no server is involved).
   */
  readonly host: string;
  /** Port of the server involved; `undefined` for child servers. */
  readonly port: number | undefined;

  constructor(message: string, opts: AgentServerErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = opts.code ?? "UNKNOWN";
    this.host = opts.host ?? "";
    this.port = opts.port;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** The server cannot be reached: dead, stopped, crashed, or never started (UNAVAILABLE). */
export class AgentServerNotAliveError extends AgentServerError {
  constructor(message: string, opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(message, { ...opts, code: "UNAVAILABLE" });
  }
}

/** Creating an object on a server failed: unknown class, bad arguments, constructor threw. */
export class AgentCreationError extends AgentServerError {}

/**
 * A remote method threw. `remote` holds the remote name, message and stack; `cause` is an
 * Error rebuilt from them (same `name`), so `err.cause instanceof Error` holds.
 */
export class AgentCallError extends AgentServerError {
  /** The exception as it was on the server. */
  readonly remote: RemoteErrorInfo;

  constructor(remote: RemoteErrorInfo, opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(`${remote.name}: ${remote.message}`, { ...opts, code: "UNKNOWN", cause: opts.cause ?? rebuildRemote(remote) });
    this.remote = remote;
    if (remote.stack) this.stack = `${this.name}: ${this.message}\n--- remote stack ---\n${remote.stack}`;
  }
}

/** An object, task or result does not exist (deleted, expired, evicted, never created). */
export class NotFoundError extends AgentServerError {
  constructor(message: string, opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(message, { ...opts, code: "NOT_FOUND" });
  }
}

/** The method or attribute is not reachable remotely. */
export class UnimplementedError extends AgentServerError {
  constructor(message: string, opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(message, { ...opts, code: "UNIMPLEMENTED" });
  }
}

/** A bounded queue, pool or message size limit was hit. */
export class ResourceExhaustedError extends AgentServerError {
  /**
   * Set when the refusal is momentary (a result pool full of unread results): the same
   * request may succeed after about this many milliseconds. Callers with backpressure on
   * (the default for async calls) wait and resubmit instead of seeing this error.
   */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, opts: Omit<AgentServerErrorOptions, "code"> & { retryAfterMs?: number } = {}) {
    super(message, { ...opts, code: "RESOURCE_EXHAUSTED" });
    this.retryAfterMs = opts.retryAfterMs;
  }
}

/** A deadline passed before the answer arrived. */
export class DeadlineExceededError extends AgentServerError {
  constructor(message: string, opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(message, { ...opts, code: "DEADLINE_EXCEEDED" });
  }
}

/** Missing or wrong token. The message is deliberately the same for every cause. */
export class UnauthenticatedError extends AgentServerError {
  constructor(message = "invalid or missing authentication token", opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(message, { ...opts, code: "UNAUTHENTICATED" });
  }
}

/** The call was cancelled (AbortSignal, shutdown, proxy stopped). */
export class CancelledError extends AgentServerError {
  constructor(message: string, opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(message, { ...opts, code: "CANCELLED" });
  }
}

/** A value could not be encoded or decoded, or a request was malformed. */
export class CodecError extends AgentServerError {
  constructor(message: string, opts: AgentServerErrorOptions = {}) {
    super(message, { ...opts, code: opts.code ?? "INVALID_ARGUMENT" });
  }
}

/** Access outside what the server allows (e.g. a download outside its file dir). */
export class PermissionDeniedError extends AgentServerError {
  constructor(message: string, opts: Omit<AgentServerErrorOptions, "code"> = {}) {
    super(message, { ...opts, code: "PERMISSION_DENIED" });
  }
}

/** The shape of an error on the wire (see `docs/protocol.md`). */
export interface WireError {
  code: ErrorCode;
  message: string;
  /** Present when a user exception (application error) caused the failure. */
  remote?: RemoteErrorInfo;
  /** A momentary refusal (RESOURCE_EXHAUSTED of a full result pool): try again after this many ms. */
  retryAfterMs?: number;
}

/** Turn a wire error into the matching class of the tree. */
export function errorFromWire(w: WireError, where: { host: string; port: number | undefined }): AgentServerError {
  const o = { host: where.host, port: where.port };
  const at = `${where.host}${where.port === undefined ? "" : `:${where.port}`}`;
  const msg = w.remote ? `${w.message} (raised in a method on ${at})` : `${w.message} [${at}]`;
  if (w.remote && w.code === "UNKNOWN") return new AgentCallError(w.remote, o);
  // A system error raised inside the remote method (e.g. by its own call to a third server):
  // the same class as if it happened here, its message naming where it really happened.
  const inner = w.remote ? { cause: rebuildRemote(w.remote) } : {};
  switch (w.code) {
    case "UNAVAILABLE":
      return new AgentServerNotAliveError(msg, { ...o, ...inner });
    case "NOT_FOUND":
      return new NotFoundError(msg, { ...o, ...inner });
    case "UNIMPLEMENTED":
      return new UnimplementedError(msg, { ...o, ...inner });
    case "RESOURCE_EXHAUSTED":
      return new ResourceExhaustedError(msg, w.retryAfterMs === undefined ? { ...o, ...inner } : { ...o, ...inner, retryAfterMs: w.retryAfterMs });
    case "DEADLINE_EXCEEDED":
      return new DeadlineExceededError(msg, { ...o, ...inner });
    case "UNAUTHENTICATED":
      return new UnauthenticatedError(w.message, { ...o, ...inner });
    case "CANCELLED":
      return new CancelledError(msg, { ...o, ...inner });
    case "PERMISSION_DENIED":
      return new PermissionDeniedError(msg, { ...o, ...inner });
    default:
      return new AgentServerError(msg, { ...o, ...inner, code: w.code });
  }
}

/** Describe any thrown value as a wire error; user exceptions keep name, message and stack. */
export function errorToWire(err: unknown, opts: { hideStacks?: boolean } = {}): WireError {
  if (err instanceof AgentServerError && !(err instanceof AgentCallError)) {
    const w: WireError = { code: err.code, message: stripWhere(err.message) };
    if (err instanceof ResourceExhaustedError && err.retryAfterMs !== undefined) w.retryAfterMs = err.retryAfterMs;
    return w;
  }
  if (err instanceof AgentCallError) {
    return { code: "UNKNOWN", message: err.message, remote: err.remote };
  }
  if (err instanceof Error) {
    const remote: RemoteErrorInfo = { name: err.name, message: err.message };
    if (!opts.hideStacks && err.stack) remote.stack = err.stack;
    return { code: "UNKNOWN", message: `${err.name}: ${err.message}`, remote };
  }
  const text = safeString(err);
  return { code: "UNKNOWN", message: text, remote: { name: "Error", message: text } };
}

function stripWhere(message: string): string {
  return message.replace(/ \[[^\]]*\]$/, "");
}

function safeString(v: unknown): string {
  try {
    return typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function rebuildRemote(remote: RemoteErrorInfo): Error {
  const e = new Error(remote.message);
  Object.defineProperty(e, "name", { value: remote.name, enumerable: false, configurable: true, writable: true });
  e.stack = remote.stack ?? `${remote.name}: ${remote.message}`;
  return e;
}

/** Every error class, for `import { errors } from "actorscope"`. */
export const errors = {
  AgentServerError,
  AgentServerNotAliveError,
  AgentCreationError,
  AgentCallError,
  NotFoundError,
  UnimplementedError,
  ResourceExhaustedError,
  DeadlineExceededError,
  UnauthenticatedError,
  CancelledError,
  CodecError,
  PermissionDeniedError,
} as const;
