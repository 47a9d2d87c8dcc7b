/**
 * The server's event log, read through a consola reporter: agents created and deleted, failed
 * calls with class/method/code, refused tokens (never the token), and access lines at debug.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { consola, type ConsolaReporter, type LogObject } from "consola";
import { connect, RpcAgentServerLauncher, RpcClient } from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { Tally, grpcAgentClasses } from "../fixtures/grpc-agents.ts";

const lines: Array<{ type: string; msg: string; fields: Record<string, unknown> }> = [];
const capture: ConsolaReporter = {
  log(o: LogObject) {
    const f = (o as LogObject & { fields?: Record<string, unknown> }).fields ?? {};
    lines.push({ type: o.type, msg: String(o.message ?? o.args.join(" ")), fields: f });
  },
};
let server: RpcAgentServerLauncher;
const saved = { level: consola.level, reporters: consola.options.reporters };

beforeAll(async () => {
  consola.setReporters([capture]);
  consola.level = 4; // debug: access lines too
  server = new RpcAgentServerLauncher({ port: 0, serverId: "logs", token: "tok-very-secret", customAgentClasses: grpcAgentClasses });
  await server.launch();
});

afterAll(async () => {
  await server.shutdown();
  await closeAllConnections();
  consola.setReporters(saved.reporters);
  consola.level = saved.level;
});

const event = (name: string) => lines.filter((l) => l.fields.event === name);

async function settle(call: () => PromiseLike<unknown>): Promise<void> {
  try {
    await call();
  } catch {
    // the failure is what is logged
  }
}

describe("event log", () => {
  test("agent created and deleted, with class and oid", async () => {
    const t = Tally.toDist({ host: server.host, port: server.port, token: "tok-very-secret" }, 1);
    await t.inc(1);
    await t.delete();
    expect(event("agent.created").map((l) => [l.fields.cls, l.fields.oid, l.fields.serverId])).toContainEqual(["Tally", t.oid, "logs"]);
    expect(event("agent.deleted").map((l) => [l.fields.cls, l.fields.oid])).toContainEqual(["Tally", t.oid]);
  });

  test("failed calls name class, method and code (sync and async)", async () => {
    const t = Tally.toDist({ host: server.host, port: server.port, token: "tok-very-secret" }, 1);
    await settle(() => t.fail("bad-sync"));
    await settle(() => t.failLater("bad-async"));
    const failed = event("call.failed").map((l) => [l.type, l.fields.cls, l.fields.method, l.fields.code]);
    expect(failed).toContainEqual(["warn", "Tally", "fail", "UNKNOWN"]);
    expect(failed).toContainEqual(["warn", "Tally", "failLater", "UNKNOWN"]);
  });

  test("names from the wire are escaped: a method name with control characters cannot forge a line or put raw bytes in the log", async () => {
    const t = Tally.toDist({ host: server.host, port: server.port, token: "tok-very-secret" }, 1);
    await t.inc(1);
    const c = connect<Record<string, (...a: unknown[]) => PromiseLike<unknown>>>({ host: server.host, port: server.port, oid: t.oid, token: "tok-very-secret" });
    await settle(() => c["e\u0000v\nil"]!());
    const hit = lines.find((l) => l.msg.includes("v\\u000ail") || String(l.fields.method ?? "").includes("\\u000a"));
    expect(hit).toBeDefined();
    expect(JSON.stringify(lines)).not.toContain("\\u0000v\\n");
    for (const l of lines) expect(/[\u0000-\u0009\u000b-\u001f]/.test(l.msg)).toBe(false);
  });

  test("a wrong token is logged as an auth failure without the token", async () => {
    const c = new RpcClient(server.host, server.port, { token: "wrong-token-value" });
    // At most one auth line a second per process (another test may just have had one): retry, bounded.
    const deadline = performance.now() + 3000;
    do {
      await settle(() => c.getServerInfo());
      if (event("auth.failed").length) break;
      await Bun.sleep(100);
    } while (performance.now() < deadline);
    c.close();
    const auth = event("auth.failed");
    expect(auth.length).toBeGreaterThanOrEqual(1);
    expect(auth[0]!.type).toBe("warn");
    const all = JSON.stringify(lines);
    expect(all).not.toContain("wrong-token-value");
    expect(all).not.toContain("tok-very-secret");
  });

  test("debug level adds an access line per request", async () => {
    const t = Tally.toDist({ host: server.host, port: server.port, token: "tok-very-secret" }, 1);
    await t.inc(2);
    expect(event("access").some((l) => l.type === "debug" && l.fields.kind === "call" && l.fields.cls === "Tally" && l.fields.code === "OK")).toBe(true);
  });
});
