/**
 * Errors of the model layer. They are application errors (a remote caller receives them as
 * `AgentCallError` with `remote.name` set to the class name), not part of the agent-server
 * error tree; like that tree they carry a gRPC-style `code`. Every message goes through
 * `redact()`, so no API key can reach a log, a remote caller or a stack trace.
 */
import type { ErrorCode } from "../core/errors.ts";
import { redact } from "./redact.ts";

/** How much of an error response body an error message keeps. */
export const MAX_ERROR_BODY = 500;

/** Base of model errors: `configName` says which model config was involved. */
export class ModelError extends Error {
  /** gRPC-style status name: DEADLINE_EXCEEDED, CANCELLED, UNAVAILABLE, INVALID_ARGUMENT, … */
  readonly code: ErrorCode;
  /** The model config involved, when known. */
  readonly configName: string | undefined;

  constructor(message: string, opts: { code?: ErrorCode; configName?: string; cause?: unknown } = {}) {
    super(redact(message), opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = opts.code ?? "UNKNOWN";
    this.configName = opts.configName;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** A model config is missing, incomplete, or names an unknown `model_type`. */
export class ModelConfigError extends ModelError {
  constructor(message: string, opts: { code?: "INVALID_ARGUMENT" | "NOT_FOUND"; configName?: string } = {}) {
    super(message, { code: opts.code ?? "INVALID_ARGUMENT", ...(opts.configName === undefined ? {} : { configName: opts.configName }) });
  }
}

/** The model endpoint answered with an HTTP error status. */
export class ModelHttpError extends ModelError {
  /** The HTTP status, e.g. 401 or 503. */
  readonly status: number;
  /** The start of the response body (at most `MAX_ERROR_BODY` characters), redacted. */
  readonly body: string;

  constructor(opts: { configName: string; status: number; statusText: string; where: string; body: string }) {
    const body = truncate(redact(opts.body.trim()), MAX_ERROR_BODY);
    super(
      `model config '${opts.configName}': ${opts.where} answered ${opts.status}${opts.statusText ? ` ${opts.statusText}` : ""}${body ? `: ${body}` : ""}`,
      { code: codeOfStatus(opts.status), configName: opts.configName },
    );
    this.status = opts.status;
    this.body = body;
  }
}

/** The error code that best matches an HTTP status. */
export function codeOfStatus(status: number): ErrorCode {
  if (status === 400 || status === 422) return "INVALID_ARGUMENT";
  if (status === 401) return "UNAUTHENTICATED";
  if (status === 403) return "PERMISSION_DENIED";
  if (status === 404) return "NOT_FOUND";
  if (status === 408 || status === 504) return "DEADLINE_EXCEEDED";
  if (status === 429) return "RESOURCE_EXHAUSTED";
  if (status === 501) return "UNIMPLEMENTED";
  if (status === 502 || status === 503) return "UNAVAILABLE";
  return status >= 500 ? "INTERNAL" : "UNKNOWN";
}

/** `s` cut to `max` characters, marked when cut. */
export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;
}
