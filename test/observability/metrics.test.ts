/**
 * `/metrics`: Prometheus text with the documented series, read after known calls and parsed
 * with a real exposition-format parser.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import parsePrometheus from "parse-prometheus-text-format";
import { RpcAgentServerLauncher, withOptions } from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { Tally, grpcAgentClasses } from "../fixtures/grpc-agents.ts";

type Family = { name: string; type: string; metrics: Array<{ labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string; sum?: string }> };

let server: RpcAgentServerLauncher;

/** The message `call` fails with. */
async function failure(call: () => PromiseLike<unknown>): Promise<string> {
  try {
    await call();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  server = new RpcAgentServerLauncher({ port: 0, metricsPort: 0, customAgentClasses: grpcAgentClasses });
  await server.launch();
});

afterAll(async () => {
  await server.shutdown();
  await closeAllConnections();
});

let lastText = "";

async function scrape(): Promise<Map<string, Family>> {
  const res = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  lastText = await res.text();
  const families = parsePrometheus(lastText) as Family[];
  return new Map(families.map((f) => [f.name, f]));
}

const value = (f: Family | undefined, labels: Record<string, string> = {}): number => {
  const m = f?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return Number(m?.value ?? m?.count ?? NaN);
};

describe("metrics", () => {
  test("metricsPort 0 binds a free port, readable after launch", () => {
    expect(server.metricsPort).toBeGreaterThan(0);
    expect(server.metricsPort).not.toBe(server.port);
  });

  test("counts calls by class, method and code, with durations, agents and results", async () => {
    const t = Tally.toDist({ host: server.host, port: server.port }, 0);
    for (let i = 0; i < 3; i++) await t.inc(1);
    expect(await failure(() => t.fail("boom"))).toContain("boom");
    // Results answered with their call never enter the pool; these are answered with their
    // task id and read with waits, so they stay in it (read) for the gauge below.
    const kept = withOptions(t, { inline: false });
    expect(await kept.later(1)).toBe(3);
    expect(await kept.later(2)).toBe(3);
    expect(await failure(() => t.failLater("late"))).toContain("late");
    const m = await scrape();
    const calls = m.get("actorscope_calls_total")!;
    expect(calls.type).toBe("COUNTER");
    expect(value(calls, { class: "Tally", method: "inc", code: "OK" })).toBe(3);
    expect(value(calls, { class: "Tally", method: "later", code: "OK" })).toBe(2);
    const failed = calls.metrics.filter((x) => x.labels?.class === "Tally" && (x.labels.method === "fail" || x.labels.method === "failLater"));
    expect(failed.map((x) => [x.labels!.method, x.labels!.code, Number(x.value)])).toEqual([
      ["fail", "UNKNOWN", 1],
      ["failLater", "UNKNOWN", 1],
    ]);
    const hist = m.get("actorscope_call_duration_seconds")!;
    expect(hist.type).toBe("HISTOGRAM");
    // parse-prometheus-text-format 1.1.1 keeps only the buckets of a labelled histogram (no
    // labels, _count or _sum): the per-series count is read from its own line.
    expect(lastText).toContain('actorscope_call_duration_seconds_count{class="Tally",method="inc"} 3');
    expect(lastText).toContain('actorscope_call_duration_seconds_count{class="Tally",method="later"} 2');
    expect(value(m.get("actorscope_agents"))).toBe(1);
    expect(value(m.get("actorscope_pool_results"))).toBeGreaterThanOrEqual(3);
    expect(value(m.get("actorscope_inflight_calls"))).toBe(0);
    expect(value(m.get("actorscope_queued_calls"))).toBe(0);
    // Counted by class (an --isolate server's restarts, test/isolate.test.ts): declared, no series until a class restarts.
    expect(m.get("actorscope_restarts_total")?.type).toBe("COUNTER");
    expect(m.get("actorscope_restarts_total")?.metrics ?? []).toEqual([]);
    expect(value(m.get("process_resident_memory_bytes"))).toBeGreaterThan(1e6);
  });

  test("an async call in flight shows in actorscope_inflight_calls", async () => {
    const t = Tally.toDist({ host: server.host, port: server.port }, 7);
    const r = t.later(300);
    await t.inc(0);
    const deadline = performance.now() + 2000;
    let inflight = 0;
    while (performance.now() < deadline && inflight === 0) inflight = value((await scrape()).get("actorscope_inflight_calls"));
    expect(inflight).toBe(1);
    expect(await r).toBe(7);
  });

  test("only /metrics is served", async () => {
    expect((await fetch(`http://127.0.0.1:${server.metricsPort}/`)).status).toBe(404);
  });
});
