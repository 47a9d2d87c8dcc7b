/**
 * The CLI side of issue 19 on real processes: `start --registry --metrics-port --log-format
 * json`, `status --registry` / `--servers` (table and JSON), the event log lines, and strict
 * flags (exit 2).
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcClient } from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { SOURCE_CLI, runCli, startServer, type RunningServer } from "../helpers/cli.ts";
import { describe, startRedis, test, type TestRedis } from "../helpers/redis.ts";

const AGENTS = join(import.meta.dir, "../fixtures/agent-dir");
let redis: TestRedis;
let a: RunningServer;
let b: RunningServer;
let dir: string;

beforeAll(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), "as-obs-cli-"));
  [a, b] = (await Promise.all(
    ["alpha", "beta"].map((id) => startServer(SOURCE_CLI, ["--port", "0", "--server-id", id, "--agent-dir", AGENTS, "--registry", redis.url, "--metrics-port", "0", "--log-format", "json", "--log-level", "debug"])),
  )) as [RunningServer, RunningServer];
});

afterAll(async () => {
  await a?.[Symbol.asyncDispose]();
  await b?.[Symbol.asyncDispose]();
  await closeAllConnections();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** JSON log lines of a server's stdout and stderr. */
function events(s: RunningServer): Array<Record<string, unknown>> {
  return [...s.stdout.lines, ...s.stderr.lines].filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("as-server status over many servers", () => {
  test("status --registry prints one table row per registered server", async () => {
    const r = await runCli(SOURCE_CLI, ["status", "--registry", redis.url]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+ADDRESS\s+UPTIME\s+AGENTS\s+PENDING\s+CALLS\/S\s+ERRORS\s+MEMORY$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(["alpha", "beta"]);
    expect(lines[1]).toContain(`localhost:${a.port}`);
    expect(lines[1]).toMatch(/MiB$/);
  });

  test("status --registry --json lists each server's record", async () => {
    const r = await runCli(SOURCE_CLI, ["status", "--registry", redis.url, "--json"]);
    expect(r.code).toBe(0);
    const { servers } = JSON.parse(r.stdout) as { servers: Array<Record<string, unknown>> };
    expect(servers.map((s) => [s.id, s.port, s.alive])).toEqual([
      ["alpha", a.port, true],
      ["beta", b.port, true],
    ]);
    expect(servers[0]).toHaveProperty("uptime");
    expect(servers[0]).toHaveProperty("memMiB");
  });

  test("status --servers FILE asks each server; one that is down is a row and exit 1", async () => {
    const file = join(dir, "servers.txt");
    writeFileSync(file, `# two live, one dead\nlocalhost:${a.port}\nlocalhost:${b.port}\n127.0.0.1:1\n`);
    const r = await runCli(SOURCE_CLI, ["status", "--servers", file, "--json"]);
    expect(r.code).toBe(1);
    const { servers } = JSON.parse(r.stdout) as { servers: Array<Record<string, unknown>> };
    expect(servers.map((s) => [s.id, s.alive])).toEqual([
      ["alpha", true],
      ["beta", true],
      ["?", false],
    ]);
    const table = await runCli(SOURCE_CLI, ["status", "--servers", file]);
    expect(table.stdout).toMatch(/127\.0\.0\.1:1\s+down/);
  });

  test("bad flags are one line and exit 2; --studio-url says what replaced it", async () => {
    const bad = await runCli(SOURCE_CLI, ["status", "--registry", "http://x"]);
    expect([bad.code, bad.stderr.trim().split("\n").length]).toEqual([2, 1]);
    const both = await runCli(SOURCE_CLI, ["status", "--registry", redis.url, "--servers", "x"]);
    expect(both.code).toBe(2);
    const studio = await runCli(SOURCE_CLI, ["start", "--port", "0", "--studio-url", "http://studio:5000"]);
    expect(studio.code).toBe(2);
    expect(studio.stderr).toContain("--registry");
    const fmt = await runCli(SOURCE_CLI, ["start", "--port", "0", "--log-format", "xml"]);
    expect([fmt.code, fmt.stderr]).toEqual([2, expect.stringContaining("--log-format must be pretty or json")]);
    const mp = await runCli(SOURCE_CLI, ["start", "--port", "0", "--metrics-port", "70000"]);
    expect(mp.code).toBe(2);
  });
});

describe("event log", () => {
  test("json lines for the listening line, metrics URL, registration, agent created and deleted", async () => {
    const c = new RpcClient("localhost", a.port);
    try {
      expect(await c.createAgent({ className: "Speaker", args: ["ann"] }, "ann-1")).toBe(true);
      expect(await c.deleteAgent("ann-1")).toBe(true);
    } finally {
      c.close();
    }
    await a.stdout.waitFor(/agent\.deleted/);
    const ev = events(a);
    expect(ev.find((e) => String(e.msg).startsWith("as-server listening on"))).toMatchObject({ level: "success", tag: "as-server" });
    expect(ev.find((e) => String(e.msg).startsWith("metrics at http://"))).toBeDefined();
    expect(ev.find((e) => e.event === "registry.up")).toMatchObject({ serverId: "alpha", level: "info" });
    expect(ev.find((e) => e.event === "agent.created")).toMatchObject({ cls: "Speaker", oid: "ann-1", serverId: "alpha" });
    expect(ev.find((e) => e.event === "agent.deleted")).toMatchObject({ cls: "Speaker", oid: "ann-1" });
    for (const e of ev) expect(typeof e.time).toBe("string");
  });

  test("Redis going away and coming back is logged; the server is listed again", async () => {
    await redis.stop();
    await a.stderr.waitFor(/"event":"registry\.down"/, 5000);
    await redis.restart();
    await a.stdout.waitFor(/registered again/, 5000);
    const r = await runCli(SOURCE_CLI, ["status", "--registry", redis.url, "--json"]);
    const { servers } = JSON.parse(r.stdout) as { servers: Array<{ id: string }> };
    expect(servers.map((s) => s.id)).toContain("alpha");
  });
});
