/**
 * Server spans for traced requests (those carrying a `trace` field, see core/trace-context.ts).
 * The span (`actorscope.create <Class>`, `actorscope.call <Class>.<method>`, `actorscope.wait`,
 * `actorscope.next`) is a child of the caller's span, and the request is served inside its
 * context, so what the method calls on other servers continues the same trace.
 *
 * An async call's span lasts until its method finished (`traceTaskDone`), not just until the
 * call was accepted. Without `@opentelemetry/api` in this process no span is made, but the
 * caller's trace context is still handed on to the method's own calls. Untraced requests never
 * reach this file: the servicer checks for the field first.
 */
import { AsyncResource } from "node:async_hooks";
import { classInfo } from "../core/registry.ts";
import type { Response } from "../core/protocol.ts";
import type { Outcome } from "./pool/types.ts";
import { formatTrace, markTraceServed, otelApi, parseTrace, servedTrace, type OtelSpan, type SpanContextLike } from "../core/trace-context.ts";

/** `SpanKind.SERVER` and `SpanStatusCode.ERROR` of @opentelemetry/api (stable numbers). */
const SPAN_KIND_SERVER = 1;
const STATUS_ERROR = 2;
/** Longest class or method name put in a span name (validation of the request comes later). */
const MAX_NAME = 256;

/** Spans of async calls accepted and not finished yet, by task id. */
const taskSpans = new Map<string, OtelSpan>();
/** Traced requests being served now: while 0, `bindTraced` costs nothing. */
let inFlight = 0;

/**
 * Serve `raw` (whose `trace` field is removed here) through `handle`, inside a span that is a
 * child of the caller's trace context. `objectOf` finds the held object a call names.
 */
export async function serveTraced(raw: Record<string, unknown>, objectOf: (oid: string) => object | undefined, handle: (req: unknown) => Promise<Response>): Promise<Response> {
  const field = raw.trace;
  delete raw.trace;
  const parent = parseTrace(field);
  // A malformed field is ignored, like a missing one: tracing never fails a call.
  if (!parent) return handle(raw);
  markTraceServed();
  const api = otelApi();
  if (!api) return servedTrace.run(field as string, () => handle(raw));
  const sc: SpanContextLike = { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.traceFlags, isRemote: true };
  if (parent.state !== undefined) sc.traceState = api.createTraceState(parent.state);
  const parentCtx = api.trace.setSpanContext(api.ROOT_CONTEXT, sc);
  const { name, attributes, asyncTask } = describe(raw, objectOf);
  const span = api.trace.getTracer("actorscope").startSpan(name, { kind: SPAN_KIND_SERVER, attributes }, parentCtx);
  const own = span.spanContext();
  // A tracer that records nothing (no provider registered) hands the caller's context on as is.
  const header = api.isSpanContextValid(own) ? formatTrace(own) : (field as string);
  // Registered before the call runs: a quick method may finish before its acceptance is answered.
  if (asyncTask !== undefined) taskSpans.set(asyncTask, span);
  inFlight++;
  let res: Response;
  try {
    res = await servedTrace.run(header, () => api.context.with(api.trace.setSpan(parentCtx, span), () => handle(raw)));
  } finally {
    inFlight--;
  }
  if (asyncTask !== undefined) {
    // Accepted: the span ends when the method does (or already did). Refused: it ends now.
    if (res.t === "task" || !taskSpans.delete(asyncTask)) return res;
  }
  if (res.t === "error") failed(span, res.error.code, res.error.message);
  span.end();
  return res;
}

/** End the span of an async call, if it was traced (called for every finished task; a Map size check when none is). */
export function traceTaskDone(task: string, o: Outcome): void {
  if (taskSpans.size === 0) return;
  const span = taskSpans.get(task);
  if (!span) return;
  taskSpans.delete(task);
  if (!o.ok) failed(span, o.error.code, o.error.message);
  span.end();
}

/**
 * `fn` bound to the current async context when a traced request is being served, so a call
 * queued for capacity runs in its own trace rather than in that of the call that freed the slot.
 */
export function bindTraced<F extends (...args: any[]) => unknown>(fn: F): F {
  return inFlight === 0 ? fn : (AsyncResource.bind(fn) as unknown as F);
}

/** Async calls whose span is still open (for leak checks). */
export function openTaskSpans(): number {
  return taskSpans.size;
}

function failed(span: OtelSpan, code: string, message: string): void {
  span.setAttribute("actorscope.error_code", code);
  span.setStatus({ code: STATUS_ERROR, message: `${code}: ${message}` });
}

function describe(raw: Record<string, unknown>, objectOf: (oid: string) => object | undefined): { name: string; attributes: Record<string, string>; asyncTask?: string } {
  const attributes: Record<string, string> = { "rpc.system": "actorscope" };
  const t = short(raw.t) ?? "?";
  const oid = short(raw.oid);
  if (oid !== undefined) attributes["actorscope.oid"] = oid;
  const task = short(raw.task) ?? short(raw.stream);
  if (task !== undefined) attributes["actorscope.task"] = task;
  if (t === "create") {
    const cls = short(raw.cls) ?? "?";
    attributes["actorscope.class"] = cls;
    return { name: `actorscope.create ${cls}`, attributes };
  }
  if (t !== "call") return { name: `actorscope.${t}`, attributes };
  const obj = oid === undefined ? undefined : objectOf(oid);
  const info = obj ? classInfo(obj.constructor) : undefined;
  const cls = info?.cls ?? "?";
  const method = short(raw.name) ?? "?";
  attributes["actorscope.class"] = cls;
  attributes["actorscope.method"] = method;
  const out: { name: string; attributes: Record<string, string>; asyncTask?: string } = { name: `actorscope.call ${cls}.${method}`, attributes };
  if (task !== undefined && info?.asyncSet.has(method) && !info.streamSet.has(method)) out.asyncTask = task;
  return out;
}

function short(v: unknown): string | undefined {
  return typeof v === "string" ? v.slice(0, MAX_NAME) : undefined;
}
