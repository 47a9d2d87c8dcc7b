/**
 * The registry: servers keep a record in a real redis-server (random port) while they live,
 * leave it on a clean shutdown, vanish within the expiry after kill -9, keep serving through
 * a Redis restart and register again; `ServerGroup.fromRegistry` follows joins and deaths.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { join } from "node:path";
import { listServers, RpcAgentServerLauncher, ServerGroup } from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { REGISTRY_TTL_MS } from "../../src/core/server-record.ts";
import { Tally, grpcAgentClasses } from "../fixtures/grpc-agents.ts";
import { describe, startRedis, test, type TestRedis } from "../helpers/redis.ts";

let redis: TestRedis;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await closeAllConnections();
  await redis?.stop();
});

/** Poll `read` until `ok` holds (bounded): the registry is read, never waited on by sleeping. */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 8000): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms; last: ${JSON.stringify(v)}`);
    await Bun.sleep(50);
  }
}

describe("registry", () => {
  test("a server registers its record (address, pid, load, no token) and removes it at once on shutdown", async () => {
    const s = new RpcAgentServerLauncher({ port: 0, registry: redis.url, token: "sekrit-token", customAgentClasses: grpcAgentClasses });
    await s.launch();
    try {
      const [rec] = await until(() => listServers(redis.url), (l) => l.some((r) => r.id === s.serverId));
      expect(rec).toMatchObject({ id: s.serverId, host: "localhost", port: s.port, pid: process.pid, capacity: 32, agents: 0, pending: 0, tokenRequired: true, tls: false });
      expect(rec!.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(Date.now() - rec!.startedAt).toBeLessThan(10_000);
      expect(JSON.stringify(rec)).not.toContain("sekrit-token");
      const t = Tally.toDist({ host: s.host, port: s.port, token: "sekrit-token" }, 1);
      expect(await t.inc(1)).toBe(2);
      const after = await until(() => listServers(redis.url), (l) => l[0]?.agents === 1 && l[0].calls >= 1);
      expect(after[0]!.agents).toBe(1);
    } finally {
      await s.shutdown();
    }
    expect(await listServers(redis.url)).toEqual([]);
  });

  test("kill -9: the record is gone within the expiry", async () => {
    const fixture = join(import.meta.dir, "../fixtures/grpc-agents.ts");
    expect(fixture).toBeTruthy();
    const s = new RpcAgentServerLauncher({ port: 0, registry: redis.url, customAgentClasses: [Tally] });
    await s.launch({ inSubprocess: true });
    try {
      const [rec] = await until(() => listServers(redis.url), (l) => l.some((r) => r.id === s.serverId));
      expect(rec!.pid).not.toBe(process.pid);
      const killedAt = performance.now();
      process.kill(rec!.pid, "SIGKILL");
      await until(() => listServers(redis.url), (l) => l.length === 0, REGISTRY_TTL_MS + 2000);
      expect(performance.now() - killedAt).toBeLessThan(REGISTRY_TTL_MS + 1500);
    } finally {
      await s.shutdown();
    }
  }, 20_000);

  test("Redis restart: the server serves on and registers again when Redis returns", async () => {
    const s = new RpcAgentServerLauncher({ port: 0, registry: redis.url, customAgentClasses: grpcAgentClasses });
    await s.launch();
    try {
      await until(() => listServers(redis.url), (l) => l.length === 1);
      await redis.stop();
      const t = Tally.toDist({ host: s.host, port: s.port }, 5);
      expect(await t.inc(1)).toBe(6);
      await redis.restart();
      const back = await until(() => listServers(redis.url), (l) => l.length === 1, 5000);
      expect(back[0]!.id).toBe(s.serverId);
    } finally {
      await s.shutdown();
    }
  }, 20_000);

  test("fromRegistry: a server that joins gets placements, one that dies stops getting them", async () => {
    const a = new RpcAgentServerLauncher({ port: 0, registry: redis.url, customAgentClasses: grpcAgentClasses });
    await a.launch();
    const group = await ServerGroup.fromRegistry(redis.url);
    const b = new RpcAgentServerLauncher({ port: 0, registry: redis.url, customAgentClasses: grpcAgentClasses });
    try {
      expect(group.servers.map((x) => x.port)).toEqual([a.port]);
      await b.launch();
      await until(async () => group.servers.map((x) => x.port).sort(), (p) => p.length === 2, 5000);
      const ports = new Set<number>();
      for (let i = 0; i < 4; i++) {
        const t = Tally.toDist(group, i);
        await t.inc(1);
        ports.add(t.port!);
      }
      expect([...ports].sort()).toEqual([a.port, b.port].sort());
      await b.shutdown();
      await until(async () => group.servers.length, (n) => n === 1, 5000);
      for (let i = 0; i < 3; i++) {
        const t = Tally.toDist(group, i);
        expect(await t.inc(1)).toBe(i + 1);
        expect(t.port).toBe(a.port);
      }
    } finally {
      group.close();
      await b.shutdown();
      await a.shutdown();
    }
  }, 20_000);
});
