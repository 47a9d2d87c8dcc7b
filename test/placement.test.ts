/**
 * Placement (`ServerGroup`): objects spread over three real in-process servers on free
 * loopback ports — round-robin, least-loaded, dead servers skipped, every server dead.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import {
  AgentCreationError,
  AgentServerNotAliveError,
  Distributable,
  RpcAgentServerLauncher,
  RpcClient,
  ServerGroup,
  asyncFunc,
  dist,
} from "../src/index.ts";
import { answerOf, serverInfoOf } from "../src/client/answers.ts";
import { ServerConnection } from "../src/client/connection.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { PendingConnection, PendingTransport } from "../src/client/transports/pending.ts";
import type { Request, Response } from "../src/core/protocol.ts";
import type { RequestOptions, Transport } from "../src/core/transport.ts";
import { rejection } from "./helpers/grpc.ts";

/** The placed object: knows its own label, and can wait for another's pending result. */
@dist
class Spot extends Distributable {
  constructor(readonly label = "") {
    super();
  }
  hello(): string {
    return `hello from ${this.label}`;
  }
  @asyncFunc
  async later(v: number): Promise<number> {
    await Bun.sleep(5);
    return v;
  }
  @asyncFunc
  async nap(ms: number): Promise<number> {
    await Bun.sleep(ms);
    return ms;
  }
  @asyncFunc
  async plus(v: number | Promise<number>, by: number): Promise<number> {
    return (await v) + by;
  }
}

/** Registered on the client only: no server can create it. */
@dist
class NotServed extends Distributable {}

const TOKEN = `placement-${crypto.randomUUID()}`;
let servers: RpcAgentServerLauncher[] = [];
/** A port where nothing listens (a server launched and shut down). */
let deadPort = 0;

async function launch(): Promise<RpcAgentServerLauncher> {
  const l = new RpcAgentServerLauncher({ host: "127.0.0.1", port: 0, customAgentClasses: [Spot], token: TOKEN, shutdownGraceMs: 200 });
  await l.launch();
  return l;
}

const addr = (l: RpcAgentServerLauncher) => ({ host: l.host, port: l.port });
const sizes = () => Promise.all(servers.map(async (l) => (await new RpcClient(l.host, l.port, { token: TOKEN }).getServerInfo()).size));

beforeAll(async () => {
  servers = await Promise.all([launch(), launch(), launch()]);
  const gone = await launch();
  deadPort = gone.port;
  await gone.shutdown();
});

afterEach(async () => {
  await Promise.all(servers.map((l) => new RpcClient(l.host, l.port, { token: TOKEN }).deleteAllAgents()));
});

afterAll(async () => {
  await Promise.all(servers.map((l) => l.shutdown()));
  await closeAllConnections();
});

describe("round-robin", () => {
  test("spreads objects evenly, in turn, and each proxy talks to the server that holds its object", async () => {
    const group = new ServerGroup(servers.map(addr), { token: TOKEN });
    expect(group.strategy).toBe("round-robin");
    const spots = Array.from({ length: 30 }, (_, i) => Spot.toDist(group, `s${i}`));
    expect(await Promise.all(spots.map((s) => s.hello()))).toEqual(spots.map((_, i) => `hello from s${i}`));
    expect(await sizes()).toEqual([10, 10, 10]);
    // In turn: object i on server i mod 3, and the proxy says so at once.
    spots.forEach((s, i) => expect(s.port).toBe(servers[i % 3]!.port));
    const lists = await Promise.all(servers.map((l) => new RpcClient(l.host, l.port, { token: TOKEN }).getAgentList()));
    spots.forEach((s, i) => expect(lists[i % 3]!.map((a) => a.id)).toContain(s.oid));
    expect(group.status().map((s) => s.placed)).toEqual([10, 10, 10]);
  });

  test("x.toDist(group) and X.toDist({ group, ... }) take the same target; the clone keeps its oid", async () => {
    const group = new ServerGroup(servers.map(addr), { token: TOKEN });
    const local = new Spot("cloned");
    const a = local.toDist(group);
    const b = Spot.toDist({ group, maxTimeoutSeconds: 2 }, "direct");
    expect(a.oid).toBe(local.oid);
    expect([await a.hello(), await b.hello()]).toEqual(["hello from cloned", "hello from direct"]);
    expect([a.port, b.port]).toEqual([servers[0]!.port, servers[1]!.port]);
    await a.delete();
    expect(await sizes()).toEqual([0, 1, 0]);
  });

  test("disposing a placed proxy deletes its object where it was placed", async () => {
    const group = new ServerGroup(servers.map(addr), { token: TOKEN });
    {
      await using s = Spot.toDist(group, "tmp");
      expect(await s.hello()).toBe("hello from tmp");
      expect(await sizes()).toEqual([1, 0, 0]);
    }
    expect(await sizes()).toEqual([0, 0, 0]);
  });
});

describe("least-loaded", () => {
  test("prefers the emptiest server until the load is even", async () => {
    // Loads 6, 0, 3 before the group sees them.
    for (const [i, n] of [[0, 6], [2, 3]] as const) {
      await Promise.all(Array.from({ length: n }, () => Spot.toDist({ ...addr(servers[i]!), token: TOKEN }).hello()));
    }
    const group = new ServerGroup(servers.map(addr), { strategy: "least-loaded", token: TOKEN });
    const first = Spot.toDist(group, "first");
    await first.hello();
    expect(first.port).toBe(servers[1]!.port);
    const more = Array.from({ length: 8 }, (_, i) => Spot.toDist(group, `m${i}`));
    await Promise.all(more.map((s) => s.hello()));
    expect(await sizes()).toEqual([6, 6, 6]);
    expect(group.status().map((s) => s.placed)).toEqual([0, 6, 3]);
  });

  test("refresh() reads each server's size and pending calls; a busy server is avoided", async () => {
    const group = new ServerGroup(servers.map(addr), { strategy: "least-loaded", token: TOKEN, loadMaxAgeMs: 60_000 });
    // Ten slow async calls in flight on server 0; nothing anywhere else.
    const busy = Spot.toDist({ ...addr(servers[0]!), token: TOKEN }, "busy");
    const slow = Array.from({ length: 10 }, () => busy.nap(300));
    await Bun.sleep(50);
    const st = await group.refresh();
    expect(st.map((s) => [s.size, s.alive])).toEqual([[1, true], [0, true], [0, true]]);
    expect(st[0]!.pending).toBeGreaterThan(0);
    const placed = Array.from({ length: 4 }, (_, i) => Spot.toDist(group, `p${i}`));
    await Promise.all(placed.map((s) => s.hello()));
    expect(placed.map((s) => s.port).filter((p) => p === servers[0]!.port)).toEqual([]);
    expect(await Promise.all(slow)).toEqual(Array(10).fill(300));
  });
});

describe("dead servers", () => {
  test("a dead server is skipped: creation goes elsewhere, early calls and references follow", async () => {
    const group = new ServerGroup([{ host: "127.0.0.1", port: deadPort }, ...servers.slice(0, 2).map(addr)], { token: TOKEN });
    const spots = Array.from({ length: 6 }, (_, i) => Spot.toDist(group, `d${i}`));
    // Called at once, before anyone knows the first server is dead.
    const pending = spots.map((s) => s.later(7));
    const chained = spots[1]!.plus(pending[0]!, 1);
    expect(await Promise.all(pending)).toEqual(Array(6).fill(7));
    expect(await chained).toBe(8);
    expect(await Promise.all(spots.map((s) => s.hello()))).toEqual(spots.map((_, i) => `hello from d${i}`));
    for (const s of spots) expect(s.port).not.toBe(deadPort);
    const [a, b] = await sizes();
    expect(a! + b!).toBe(6);
    const status = group.status();
    expect(status[0]).toMatchObject({ port: deadPort, alive: false, placed: 0 });
    expect(status[0]!.error).toMatch(/UNAVAILABLE/);
  });

  test("least-loaded: the probe finds the dead server and nothing is placed there", async () => {
    const group = new ServerGroup([{ host: "127.0.0.1", port: deadPort }, addr(servers[2]!)], { strategy: "least-loaded", token: TOKEN });
    const spots = Array.from({ length: 3 }, () => Spot.toDist(group));
    await Promise.all(spots.map((s) => s.hello()));
    expect(spots.map((s) => s.port)).toEqual(Array(3).fill(servers[2]!.port));
    expect(group.status().map((s) => s.alive)).toEqual([false, true]);
  });

  test("when every server is dead, creation fails with one clear UNAVAILABLE error naming each", async () => {
    const group = new ServerGroup([`127.0.0.1:${deadPort}`, `localhost:${deadPort}`], { token: TOKEN });
    const s = Spot.toDist(group, "nowhere");
    const e = await rejection(s.hello());
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toContain(`127.0.0.1:${deadPort} (UNAVAILABLE)`);
    expect(e.message).toContain(`localhost:${deadPort} (UNAVAILABLE)`);
    // Both are now known dead: the next creation fails at once, with the same kind of error.
    const t0 = performance.now();
    expect(await rejection(Spot.toDist(group).hello())).toBeInstanceOf(AgentServerNotAliveError);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  test("refresh() probes dead servers too: one that is back is alive again at once", async () => {
    const l = await launch();
    const port = l.port;
    await l.shutdown();
    const group = new ServerGroup([{ host: "127.0.0.1", port }, addr(servers[0]!)], { token: TOKEN, deadRetryMs: 60_000 });
    await Spot.toDist(group).hello();
    expect(group.status()[0]!.alive).toBe(false);
    expect((await group.refresh())[0]!.alive).toBe(false);
    const back = new RpcAgentServerLauncher({ host: "127.0.0.1", port, customAgentClasses: [Spot], token: TOKEN, shutdownGraceMs: 200 });
    await back.launch();
    try {
      expect((await group.refresh())[0]).toMatchObject({ alive: true, size: 0 });
      const s = Spot.toDist(group);
      await s.hello();
      expect(s.port).toBe(port);
    } finally {
      await back.shutdown();
    }
  });

  test("a dead server is tried again after deadRetryMs", async () => {
    const l = await launch();
    const port = l.port;
    await l.shutdown();
    const group = new ServerGroup([{ host: "127.0.0.1", port }, addr(servers[0]!)], { token: TOKEN, deadRetryMs: 100 });
    await Spot.toDist(group).hello();
    expect(group.status()[0]!.alive).toBe(false);
    const back = new RpcAgentServerLauncher({ host: "127.0.0.1", port, customAgentClasses: [Spot], token: TOKEN, shutdownGraceMs: 200 });
    await back.launch();
    try {
      await Bun.sleep(150);
      const spots = Array.from({ length: 4 }, () => Spot.toDist(group));
      await Promise.all(spots.map((s) => s.hello()));
      expect(spots.some((s) => s.port === port)).toBe(true);
    } finally {
      await back.shutdown();
    }
  });
});

describe("errors that are not about reachability", () => {
  test("a class the server does not serve fails creation (AgentCreationError), without trying others", async () => {
    const group = new ServerGroup(servers.map(addr), { token: TOKEN });
    const e = await rejection(NotServed.toDist(group).delete());
    expect(e).toBeInstanceOf(AgentCreationError);
    expect(e.code).toBe("NOT_FOUND");
    expect(group.status().every((s) => s.alive)).toBe(true);
  });

  test.each(["round-robin", "least-loaded"] as const)("%s: a wrong token is UNAUTHENTICATED, not a dead server", async (strategy) => {
    const group = new ServerGroup(servers.map(addr), { token: "wrong", strategy });
    const e = await rejection(Spot.toDist(group).hello());
    expect(e.code).toBe("UNAUTHENTICATED");
    expect(group.status().every((s) => s.alive)).toBe(true);
  });

  test("bad groups and bad targets are TypeErrors at once", () => {
    expect(() => new ServerGroup([])).toThrow(TypeError);
    expect(() => new ServerGroup(["h:1", "h:1"])).toThrow(/twice/);
    expect(() => new ServerGroup(["nonsense"])).toThrow(/host:port/);
    expect(() => new ServerGroup([{ host: "h", port: 0 }])).toThrow(/port/);
    expect(() => new ServerGroup(["h:1"], { strategy: "random" as never })).toThrow(/strategy/);
    expect(() => new ServerGroup(["h:1"], { deadRetryMs: -1 })).toThrow(/deadRetryMs/);
    const group = new ServerGroup(["h:1"]);
    expect(() => Spot.toDist({ group, host: "h", port: 1 })).toThrow(/without host\/port/);
    expect(() => Spot.toDist({ group: {} as ServerGroup })).toThrow(/ServerGroup/);
  });
});

describe("pick (bulk placement)", () => {
  test("round-robin: pick(n) hands out the servers in turn and counts n placements", async () => {
    const group = new ServerGroup(servers.map(addr), { token: TOKEN });
    const picked = [await group.pick(100), await group.pick(50), await group.pick(), await group.pick(7)];
    expect(picked.map((p) => p.port)).toEqual([servers[0]!.port, servers[1]!.port, servers[2]!.port, servers[0]!.port]);
    expect(group.status().map((s) => s.placed)).toEqual([107, 50, 1]);
  });

  test("least-loaded: a big pick steers the next ones elsewhere; all dead is a clear error", async () => {
    const group = new ServerGroup(servers.map(addr), { strategy: "least-loaded", token: TOKEN });
    const a = await group.pick(1000);
    const b = await group.pick(10);
    const c = await group.pick(10);
    expect(new Set([a.port, b.port, c.port]).size).toBe(3);
    expect((await group.pick(5)).port).not.toBe(a.port);
    const dead = new ServerGroup([{ host: "127.0.0.1", port: deadPort }], { strategy: "least-loaded", token: TOKEN });
    const e = await rejection(dead.pick());
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.message).toContain(`127.0.0.1:${deadPort}`);
    expect(await rejection(group.pick(0))).toBeInstanceOf(TypeError);
  });
});

describe("servers lists", () => {
  test("ServerGroup.parse reads host:port lines, [v6]:port, comments and blank lines", () => {
    const g = ServerGroup.parse("# workers\n10.0.0.2:12310\n\n10.0.0.3:12311  # second\n[fd00::5]:12310\n", { strategy: "least-loaded" });
    expect(g.servers).toEqual([
      { host: "10.0.0.2", port: 12310 },
      { host: "10.0.0.3", port: 12311 },
      { host: "fd00::5", port: 12310 },
    ]);
    expect(g.strategy).toBe("least-loaded");
  });
});

/** A transport that records what reaches it and answers `ok`. */
function recorder(): Transport & { seen: Array<{ req: Request; opts: RequestOptions | undefined }> } {
  const seen: Array<{ req: Request; opts: RequestOptions | undefined }> = [];
  return { seen, request: async (req, opts) => (seen.push({ req, opts }), { t: "ok" } as Response), abort() {} };
}

describe("the connection of an object not placed yet", () => {
  test("requests wait, then go to the chosen transport in the order they were made, options intact", async () => {
    const pending = new PendingTransport();
    const answers = [pending.request({ t: "alive" }), pending.request({ t: "info" }, { timeoutMs: 50 }), pending.request({ t: "list" })];
    expect(pending.queued).toBe(3);
    const target = recorder();
    pending.resolve(target);
    expect(await Promise.all(answers)).toEqual([{ t: "ok" }, { t: "ok" }, { t: "ok" }]);
    expect(target.seen.map((s) => s.req.t)).toEqual(["alive", "info", "list"]);
    expect(target.seen[1]!.opts).toEqual({ timeoutMs: 50 });
    // Later requests go straight through.
    await pending.request({ t: "deleteAll" });
    expect(target.seen.at(-1)!.req.t).toBe("deleteAll");
  });

  test("when no server takes the object, waiting and later requests reject with why; abort before the choice does the same", async () => {
    const pending = new PendingTransport();
    const early = pending.request({ t: "alive" });
    const why = new AgentServerNotAliveError("no server of the group could create it");
    pending.fail(why);
    expect(await rejection(early)).toBe(why);
    expect(await rejection(pending.request({ t: "alive" }))).toBe(why);
    const aborted = new PendingTransport();
    const waiting = aborted.request({ t: "alive" });
    const reason = new Error("torn down");
    aborted.abort(reason);
    expect(await rejection(waiting)).toBe(reason);
  });

  test("names its first candidate until placed, then the chosen server; references wait for the choice", async () => {
    const conn = new PendingConnection({ host: "10.0.0.1", port: 1 });
    expect(conn.address).toEqual({ host: "10.0.0.1", port: 1 });
    expect(conn.where).toEqual({ host: "10.0.0.1", port: 1 });
    const choosing = conn.addressPending!;
    expect(choosing).toBeInstanceOf(Promise);
    const queued = conn.send({ t: "alive" });
    const chosen = new ServerConnection(recorder(), { host: "10.0.0.2", port: 2 });
    conn.place(chosen);
    await choosing;
    expect(conn.addressPending).toBeUndefined();
    expect(conn.address).toEqual({ host: "10.0.0.2", port: 2 });
    expect(conn.where).toEqual({ host: "10.0.0.2", port: 2 });
    expect(await queued).toEqual({ t: "ok" });
  });

  test("a failed placement leaves addressPending rejected with the placement's error", async () => {
    const conn = new PendingConnection({ host: "10.0.0.1", port: 1 });
    const why = new AgentServerNotAliveError("nobody");
    conn.fail(why);
    expect(await rejection(conn.addressPending!)).toBe(why);
    expect(await rejection(conn.send({ t: "alive" }))).toBe(why);
  });
});

describe("answers that break the protocol", () => {
  const where = { host: "127.0.0.1", port: 9 };

  test("an answer of the wrong kind is a protocol error (INTERNAL) naming the request", () => {
    const e = (() => {
      try {
        answerOf({ t: "info" }, { t: "ok" }, "value", where);
      } catch (err) {
        return err as Error & { code?: string };
      }
      throw new Error("accepted a wrong answer");
    })();
    expect(e.code).toBe("INTERNAL");
    expect(e.message).toContain("answered ok to info");
  });

  test("a server info without its counts is a protocol error, not a value", () => {
    expect(() => serverInfoOf({ size: "many" }, where)).toThrow(/malformed server info/);
    expect(serverInfoOf({ size: 1, pending: 0 }, where)).toEqual({ size: 1, pending: 0 } as never);
  });
});
