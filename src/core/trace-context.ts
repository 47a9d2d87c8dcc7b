/**
 * W3C trace context on the wire (the optional `trace` field of create, call, wait and next
 * requests): what an outgoing request carries, and how a server reads it.
 *
 * OpenTelemetry is an optional peer dependency. Nothing here loads `@opentelemetry/api`
 * until it is needed, and a process that never set OpenTelemetry up pays one property read
 * per request: the API keeps everything an application registers (tracer provider, context
 * manager) on `globalThis[Symbol.for("opentelemetry.js.api.1")]`, so while that is absent no
 * span can be active and there is nothing to send.
 *
 * The field holds the `traceparent` header, then, when the span has a trace state, one space
 * and the `tracestate` header (a traceparent never holds a space, so the split is exact).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { REQUEST_TABLE, type Request, type Traced } from "./protocol.ts";

/** The span context fields actorscope reads and builds (structural: no types from the optional package). */
export interface SpanContextLike {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
  traceState?: { serialize(): string };
}

/** The parts of `@opentelemetry/api` actorscope uses. */
export interface OtelApi {
  trace: {
    getActiveSpan(): { spanContext(): SpanContextLike } | undefined;
    getTracer(name: string, version?: string): OtelTracer;
    setSpanContext(ctx: unknown, sc: SpanContextLike): unknown;
    setSpan(ctx: unknown, span: OtelSpan): unknown;
  };
  context: { with<T>(ctx: unknown, fn: () => T): T };
  ROOT_CONTEXT: unknown;
  createTraceState(raw?: string): { serialize(): string };
  isSpanContextValid(sc: SpanContextLike): boolean;
}

/** A tracer, as far as a server uses one. */
export interface OtelTracer {
  startSpan(name: string, opts: { kind: number; attributes: Record<string, string> }, ctx: unknown): OtelSpan;
}

/** A span, as far as a server uses one. */
export interface OtelSpan {
  spanContext(): SpanContextLike;
  setAttribute(key: string, value: string): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}

/** A parsed `trace` field. */
export interface ParsedTrace {
  traceId: string;
  spanId: string;
  traceFlags: number;
  /** The raw `tracestate`, when one came. */
  state?: string;
}

/** Longest `trace` field read: a traceparent (55) plus the 512 characters W3C allows a tracestate, with room. */
export const MAX_TRACE_FIELD = 1024;

const OTEL_GLOBAL = Symbol.for("opentelemetry.js.api.1");
const TRACED: Readonly<Record<string, boolean>> = Object.fromEntries(Object.entries(REQUEST_TABLE).map(([t, k]) => [t, k.trace]));
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^ ]*)?$/;

let api: OtelApi | null | undefined;

/** `@opentelemetry/api`, loaded on first need and only once; null when it is not installed. */
export function otelApi(): OtelApi | null {
  if (api !== undefined) return api;
  try {
    api = require("@opentelemetry/api") as OtelApi;
  } catch {
    api = null;
  }
  return api;
}

/**
 * The trace of the request a server is serving now (its own span's, or the caller's when it
 * records none). Outgoing requests fall back to it when no OpenTelemetry span is active, so a
 * server without a context manager (or without the API at all) does not break the trace.
 */
export const servedTrace = new AsyncLocalStorage<string>();
let served = false;

/** This process served a traced request: from now on outgoing requests look at `servedTrace`. */
export function markTraceServed(): void {
  served = true;
}

/**
 * `req`, with the `trace` field set when a span is active here and its kind carries one;
 * otherwise `req` untouched. One property read when OpenTelemetry was never set up.
 */
export function withTrace<R extends Request>(req: R): R {
  if ((globalThis as Record<symbol, unknown>)[OTEL_GLOBAL] === undefined && !served) return req;
  const r = req as R & Traced;
  if (r.trace !== undefined || !TRACED[req.t]) return req;
  const t = outgoingTrace();
  if (t !== undefined) r.trace = t;
  return req;
}

/** The `trace` field for a request sent now, or undefined when there is no trace to continue. */
export function outgoingTrace(): string | undefined {
  if ((globalThis as Record<symbol, unknown>)[OTEL_GLOBAL] !== undefined) {
    const a = api ?? otelApi();
    const sc = a?.trace.getActiveSpan()?.spanContext();
    if (sc && a!.isSpanContextValid(sc)) return formatTrace(sc);
  }
  return served ? servedTrace.getStore() : undefined;
}

/** A span context as a `trace` field: `traceparent[ tracestate]`. */
export function formatTrace(sc: SpanContextLike): string {
  const head = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
  const state = sc.traceState?.serialize();
  return state ? `${head} ${state}` : head;
}

/** Read a `trace` field; undefined when it is malformed (the request is then served untraced). */
export function parseTrace(v: unknown): ParsedTrace | undefined {
  if (typeof v !== "string" || v.length > MAX_TRACE_FIELD) return undefined;
  const sp = v.indexOf(" ");
  const m = TRACEPARENT.exec(sp < 0 ? v : v.slice(0, sp));
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5] !== undefined)) return undefined;
  if (/^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  const out: ParsedTrace = { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) };
  const state = sp < 0 ? "" : v.slice(sp + 1).trim();
  if (state) out.state = state;
  return out;
}
