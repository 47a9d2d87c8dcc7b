/**
 * OpenTelemetry traces (issue 19): the caller's trace context travels with calls, creations,
 * waits, reference resolution and stream pulls, and the server's spans are its children,
 * across servers. Two real gRPC servers run in this process, so one in-memory exporter sees
 * the client's span and both servers' spans. Child servers have no SDK: what they receive is
 * checked through the trace context their own calls would carry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { context, trace, type Span } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { RpcAgentServerLauncher, withOptions, type Remote } from "../../src/index.ts";
import { closeAllConnections, connectionFor } from "../../src/client/connections.ts";
import { parseTrace, withTrace } from "../../src/core/trace-context.ts";
import type { CallRequest, Request } from "../../src/core/protocol.ts";
import { openTaskSpans } from "../../src/server/tracing.ts";
import { Back, Front, traceAgentClasses } from "../fixtures/trace-agents.ts";

const exporter = new InMemorySpanExporter();
const tracer = trace.getTracer("traces.test");
let a: RpcAgentServerLauncher;
let b: RpcAgentServerLauncher;

beforeAll(async () => {
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  a = new RpcAgentServerLauncher({ port: 0, customAgentClasses: traceAgentClasses, shutdownGraceMs: 500 });
  b = new RpcAgentServerLauncher({ port: 0, customAgentClasses: traceAgentClasses, shutdownGraceMs: 500 });
  await Promise.all([a.launch(), b.launch()]);
});

afterAll(async () => {
  await Promise.all([a?.shutdown(), b?.shutdown()]);
  await closeAllConnections();
  trace.disable();
  context.disable();
});

/** Run `fn` inside a fresh root span; answer its result, the span and every span of its trace. */
async function traced<T>(fn: () => Promise<T>): Promise<{ value: T; root: ReadableSpan; spans: ReadableSpan[] }> {
  let id = "";
  const value = await tracer.startActiveSpan("client", async (s: Span) => {
    id = s.spanContext().spanId;
    try {
      return await fn();
    } finally {
      s.end();
    }
  });
  // Async call spans end when their method does, after the answer: give them a moment.
  for (let i = 0; i < 100 && openTaskSpans() > 0; i++) await Bun.sleep(10);
  const all = exporter.getFinishedSpans();
  const root = all.find((s) => s.spanContext().spanId === id)!;
  return { value, root, spans: all.filter((s) => s.spanContext().traceId === root.spanContext().traceId) };
}

function parentOf(s: ReadableSpan): string | undefined {
  return s.parentSpanContext?.spanId;
}

function named(spans: ReadableSpan[], name: string): ReadableSpan[] {
  return spans.filter((s) => s.name === name);
}

describe("traces over gRPC (both servers in this process)", () => {
  test("create, call, and a call from server A to server B form one trace: client → A → B", async () => {
    const { root, spans } = await traced(async () => {
      const back = Back.toDist({ host: b.host, port: b.port }) as Remote<Back>;
      const front = Front.toDist({ host: a.host, port: a.port }) as Remote<Front>;
      // Not inline: hop's result is read with a wait, whose span is checked below.
      expect(await withOptions(front, { inline: false }).hop(back, 20)).toBe(41);
    });
    const creates = [...named(spans, "actorscope.create Back"), ...named(spans, "actorscope.create Front")];
    expect(creates).toHaveLength(2);
    for (const c of creates) expect(parentOf(c)).toBe(root.spanContext().spanId);
    const [hop] = named(spans, "actorscope.call Front.hop");
    expect(hop).toBeDefined();
    expect(parentOf(hop!)).toBe(root.spanContext().spanId);
    expect(hop!.attributes).toMatchObject({ "rpc.system": "actorscope", "actorscope.class": "Front", "actorscope.method": "hop" });
    expect(hop!.attributes["actorscope.oid"]).toBeString();
    expect(hop!.attributes["actorscope.task"]).toMatch(/^[0-9a-f]{32}$/);
    // The async call's span covers its method, so B's call (made by the method) lies inside it.
    const [work] = named(spans, "actorscope.call Back.work");
    expect(parentOf(work!)).toBe(hop!.spanContext().spanId);
    expect(work!.kind).toBe(1); // SERVER
    // The client's wait for hop's result is a child of the client span.
    expect(named(spans, "actorscope.wait").some((w) => parentOf(w) === root.spanContext().spanId)).toBe(true);
    expect(new Set(spans.map((s) => s.spanContext().traceId)).size).toBe(1);
  });

  test("a server resolving a future from another server continues the trace (B's wait span is a child of A's call)", async () => {
    const back = Back.toDist({ host: b.host, port: b.port }) as Remote<Back>;
    const front = Front.toDist({ host: a.host, port: a.port }) as Remote<Front>;
    const { spans } = await traced(async () => expect(await front.plusOne(back.slowWork(1))).toBe(3));
    const [plus] = named(spans, "actorscope.call Front.plusOne");
    const waitsOnB = named(spans, "actorscope.wait").filter((w) => parentOf(w) === plus!.spanContext().spanId);
    expect(waitsOnB.length).toBeGreaterThanOrEqual(1);
    expect(named(spans, "actorscope.call Back.slowWork")).toHaveLength(1);
  });

  test("an async call queued for capacity runs in its own trace, not in that of the call that freed the slot", async () => {
    const small = new RpcAgentServerLauncher({ port: 0, customAgentClasses: traceAgentClasses, capacity: 1, shutdownGraceMs: 500 });
    await small.launch();
    try {
      const back = Back.toDist({ host: b.host, port: b.port }) as Remote<Back>;
      const front = Front.toDist({ host: small.host, port: small.port }) as Remote<Front>;
      await back.work(0);
      await front.plusOne(0);
      const runs = await Promise.all([1, 2, 3].map((x) => traced(() => front.hop(back, x))));
      for (const { spans } of runs) {
        const [hop] = named(spans, "actorscope.call Front.hop");
        const [work] = named(spans, "actorscope.call Back.work");
        expect(parentOf(work!)).toBe(hop!.spanContext().spanId);
      }
    } finally {
      await small.shutdown();
    }
  });

  test("a stream's call and its pulls are spans of the caller's trace", async () => {
    const back = Back.toDist({ host: b.host, port: b.port }) as Remote<Back>;
    await back.work(0);
    const { root, spans } = await traced(async () => {
      const got: number[] = [];
      for await (const x of back.count(3)) got.push(x);
      expect(got).toEqual([0, 1, 2]);
    });
    const [call] = named(spans, "actorscope.call Back.count");
    expect(parentOf(call!)).toBe(root.spanContext().spanId);
    const pulls = named(spans, "actorscope.next");
    expect(pulls.length).toBeGreaterThanOrEqual(1);
    for (const p of pulls) expect(parentOf(p)).toBe(root.spanContext().spanId);
  });

  test("a method's error sets the span status ERROR with its code", async () => {
    const back = Back.toDist({ host: b.host, port: b.port }) as Remote<Back>;
    const { spans } = await traced(async () => {
      await back.boom().then(
        () => expect.unreachable(),
        () => {},
      );
    });
    const [boom] = named(spans, "actorscope.call Back.boom");
    expect(boom!.status.code).toBe(2); // ERROR
    expect(boom!.status.message).toMatch(/^UNKNOWN: /);
    expect(boom!.attributes["actorscope.error_code"]).toBe("UNKNOWN");
  });

  test("without an active span no request carries a trace field, and the servers record no span", async () => {
    // Every request this process sends to B, as handed to the gRPC transport.
    const conn = connectionFor({ host: b.host, port: b.port });
    const send = conn.transport.request.bind(conn.transport);
    const sent: Request[] = [];
    conn.transport.request = (req, opts) => {
      sent.push({ ...req });
      return send(req, opts);
    };
    try {
      exporter.reset();
      const back = Back.toDist({ host: b.host, port: b.port }) as Remote<Back>;
      expect(await back.work(2)).toBe(4);
      // Not inline: its result is read with a wait (a fast task's would come with the call).
      expect(await withOptions(back, { inline: false }).slowWork(2)).toBe(3);
      for await (const _ of back.count(2));
      await back.delete();
      expect(new Set(sent.map((r) => r.t))).toEqual(new Set(["create", "call", "wait", "next", "delete"]));
      for (const r of sent) expect(Object.keys(r)).not.toContain("trace");
      expect(exporter.getFinishedSpans()).toHaveLength(0);
      // The same with a span active: the kinds that carry trace context carry it, the others not.
      sent.length = 0;
      const back2 = await tracer.startActiveSpan("s", async (s: Span) => {
        const p = Back.toDist({ host: b.host, port: b.port }) as Remote<Back>;
        expect(await withOptions(p, { inline: false }).slowWork(1)).toBe(2);
        await p.delete();
        s.end();
        return p;
      });
      // Only this object's requests (another test's waits may still be on their way).
      const tasks = new Set(sent.flatMap((r) => (r.t === "call" && r.oid === back2.oid && r.task ? [r.task] : [])));
      const mine = sent.filter((r) => ("oid" in r && r.oid === back2.oid) || (r.t === "wait" && tasks.has(r.task)));
      expect(mine.map((r) => `${r.t} ${"trace" in r}`).sort()).toEqual(["call true", "create true", "delete false", "wait true"]);
    } finally {
      conn.transport.request = send;
    }
    const req: CallRequest = { t: "call", oid: "o1", name: "m", args: new Uint8Array() };
    expect("trace" in withTrace(req)).toBe(false);
  });

  test("with a span active the field is the span's traceparent (and tracestate after a space)", async () => {
    await tracer.startActiveSpan("s", async (s: Span) => {
      const req = withTrace<CallRequest>({ t: "call", oid: "o1", name: "m", args: new Uint8Array() });
      const sc = s.spanContext();
      expect(req.trace).toBe(`00-${sc.traceId}-${sc.spanId}-01`);
      // Kinds that carry no trace (delete, cancel, …) stay untouched.
      expect("trace" in withTrace({ t: "delete", oid: "o1" })).toBe(false);
      s.end();
    });
    expect(parseTrace("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")).toEqual({
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      traceFlags: 1,
      state: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    });
    expect(parseTrace("00-00000000000000000000000000000000-b7ad6b7169203331-01")).toBeUndefined();
    expect(parseTrace("garbage")).toBeUndefined();
  });
});

describe("traces in child mode (children record no spans: their calls carry what they received)", () => {
  test("a child sees the caller's span, and hands it on to another child it calls", async () => {
    const back = new Back().toDist();
    const front = new Front().toDist();
    try {
      let sc = { traceId: "", spanId: "" };
      const seen = await tracer.startActiveSpan("client", async (s: Span) => {
        sc = s.spanContext();
        try {
          return await front.traces(back);
        } finally {
          s.end();
        }
      });
      const here = parseTrace(seen.here);
      const there = parseTrace(seen.there);
      expect(here).toMatchObject({ traceId: sc.traceId, spanId: sc.spanId });
      expect(there).toMatchObject({ traceId: sc.traceId, spanId: sc.spanId });
      // And without a span, a child sees none.
      expect(await front.traces(back)).toEqual({ here: undefined, there: undefined });
    } finally {
      await Promise.all([back.stop(), front.stop()]);
    }
  });
});
