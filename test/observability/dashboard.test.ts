/**
 * The dashboard in a real headless Chromium: `as-server dashboard --registry` serves a page
 * listing the registered servers and their agents, which updates live when an agent is
 * created; a screenshot is written under the test's temp dir. Token checks over plain HTTP.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RpcAgentServerLauncher, RpcClient } from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { serveDashboard, type Dashboard } from "../../src/server/dashboard/server.ts";
import { Tally, grpcAgentClasses } from "../fixtures/grpc-agents.ts";
import { openPage } from "../helpers/chromium.ts";
import { LineReader, SOURCE_CLI, cliEnv } from "../helpers/cli.ts";
import { chromiumMissing, testUnless } from "../helpers/needs.ts";
import { describe, startRedis, test, type TestRedis } from "../helpers/redis.ts";

const browserTest = testUnless(chromiumMissing(), "chromium not installed");
let redis: TestRedis;
let server: RpcAgentServerLauncher;
let dir: string;

beforeAll(async () => {
  redis = await startRedis();
  server = new RpcAgentServerLauncher({ port: 0, serverId: "dash-a", registry: redis.url, customAgentClasses: grpcAgentClasses });
  await server.launch();
  dir = mkdtempSync(join(tmpdir(), "as-dashboard-"));
});

afterAll(async () => {
  await server?.shutdown();
  await closeAllConnections();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Poll `read` until `ok` (bounded). */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (performance.now() > deadline) throw new Error(`not met within ${ms} ms; last: ${JSON.stringify(v)}`);
    await Bun.sleep(50);
  }
}

describe("dashboard", () => {
  browserTest("Chromium shows the servers and agents and updates when an agent is created", async () => {
    const t = Tally.toDist({ host: server.host, port: server.port }, 1, "first");
    await t.inc(1);
    await using proc = Bun.spawn([...SOURCE_CLI, "dashboard", "--registry", redis.url, "--port", "0"], { env: cliEnv(), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const out = new LineReader(proc.stdout);
    const [, url] = await out.waitFor(/as-server dashboard at (http:\/\/\S+)/);
    await using page = await openPage(url!);
    const text = () => page.evaluate<string>("document.body.innerText");
    const first = await until(text, (s) => s.includes("dash-a") && s.includes(t.oid));
    expect(first).toContain(`localhost:${server.port}`);
    expect(first).toContain("Tally");
    const second = Tally.toDist({ host: server.host, port: server.port }, 2, "second");
    await second.inc(1);
    await until(text, (s) => s.includes(second.oid));
    expect(await page.evaluate<number>("document.querySelectorAll('[data-oid]').length")).toBe(2);
    const shot = join(dir, "dashboard.png");
    await page.screenshot(shot);
    expect(existsSync(shot) && statSync(shot).size).toBeGreaterThan(1000);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  }, 30_000);

  test("with a token: pages, events and actions need it; actions need the x-actorscope header", async () => {
    const d: Dashboard = serveDashboard({ source: { registry: redis.url }, port: 0, token: "dash-secret" });
    try {
      expect((await fetch(d.url)).status).toBe(401);
      expect((await fetch(`${d.url}?token=wrong-secret`)).status).toBe(401);
      const page = await fetch(`${d.url}?token=dash-secret`);
      expect([page.status, (await page.text()).includes("actorscope servers")]).toEqual([200, true]);
      const snap = (await (await fetch(`${d.url}api/servers?token=dash-secret`)).json()) as { servers: Array<{ id: string }> };
      expect(snap.servers.map((s) => s.id)).toEqual(["dash-a"]);
      const body = JSON.stringify({ host: server.host, port: server.port, oid: "nope" });
      expect((await fetch(`${d.url}api/delete?token=dash-secret`, { method: "POST", body })).status).toBe(403);
      const elsewhere = JSON.stringify({ host: "10.9.9.9", port: 1, oid: "x" });
      expect((await fetch(`${d.url}api/delete?token=dash-secret`, { method: "POST", body: elsewhere, headers: { "x-actorscope": "1" } })).status).toBe(404);
    } finally {
      await d.stop();
    }
  });

  test("deletes an agent through the page's action", async () => {
    const d = serveDashboard({ source: { registry: redis.url }, port: 0 });
    try {
      const c = new RpcClient(server.host, server.port);
      await c.createAgent({ className: "Tally", args: [0] }, "to-delete");
      const res = await fetch(`${d.url}api/delete`, { method: "POST", body: JSON.stringify({ host: server.host, port: server.port, oid: "to-delete" }), headers: { "x-actorscope": "1" } });
      expect(res.status).toBe(200);
      expect((await c.getAgentList()).map((a) => a.id)).not.toContain("to-delete");
      c.close();
    } finally {
      await d.stop();
    }
  });
});
