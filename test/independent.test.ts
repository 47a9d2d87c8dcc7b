/**
 * Independent mode: objects on a running agent server, over gRPC. Real servers on free
 * loopback ports, nothing mocked.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  AgentCallError,
  AgentCreationError,
  AgentServerNotAliveError,
  AsyncResult,
  Msg,
  NotFoundError,
  ResourceExhaustedError,
  RpcAgentServerLauncher,
  RpcClient,
  UnauthenticatedError,
  connect,
} from "../src/index.ts";
import { closeAllConnections, connectionFor } from "../src/client/connections.ts";
import { encodeArgs } from "../src/client/ref-encode.ts";
import { Adder, Grumpy, Parrot, Tally, Unlisted, gate, resetGate } from "./fixtures/grpc-agents.ts";
import { rejection, startServer, type TestServer } from "./helpers/grpc.ts";
import { startEnv } from "./helpers/children.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.shutdown();
  await closeAllConnections();
});

describe("launcher", () => {
  test("port 0 binds a free port and reads it back", async () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.serverId).toMatch(/^[A-Za-z0-9]{8}$/);
    expect(await new RpcClient(server.host, server.port).isAlive()).toBe(true);
  });

  test("generateServerId gives 8 random alphanumerics", () => {
    const ids = new Set(Array.from({ length: 50 }, () => RpcAgentServerLauncher.generateServerId("localhost", 1)));
    expect(ids.size).toBe(50);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9]{8}$/);
  });

  test("a non-loopback host without a token refuses to start", () => {
    expect(() => new RpcAgentServerLauncher({ host: "0.0.0.0", port: 0 })).toThrow(/refusing to listen on non-loopback 0\.0\.0\.0 without a token/);
    // Allowed with a token, with insecure, or when localMode keeps it on loopback.
    expect(() => new RpcAgentServerLauncher({ host: "0.0.0.0", token: "t" })).not.toThrow();
    expect(() => new RpcAgentServerLauncher({ host: "0.0.0.0", insecure: true })).not.toThrow();
    expect(() => new RpcAgentServerLauncher({ host: "0.0.0.0", localMode: true })).not.toThrow();
  });

  test("bad options are refused with a clear message", () => {
    expect(() => new RpcAgentServerLauncher({ port: 70000 })).toThrow(/port must be an integer in 0\.\.65535/);
    expect(() => new RpcAgentServerLauncher({ capacity: 0 })).toThrow(/capacity must be a positive integer/);
    expect(() => new RpcAgentServerLauncher({ poolType: "disk" as "local" })).toThrow(/poolType/);
  });

  test("a remote stop ends waitUntilTerminate, and later calls fail UNAVAILABLE", async () => {
    await using s = await startServer();
    const t = Tally.toDist(s.conf, 1);
    expect(await t.inc()).toBe(2);
    expect(await new RpcClient(s.host, s.port).stop()).toBe(true);
    await s.waitUntilTerminate();
    const e = await rejection(t.inc());
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.code).toBe("UNAVAILABLE");
    expect(await new RpcClient(s.host, s.port).isAlive()).toBe(false);
  });

  test("shutdown refuses new calls, lets the one in flight finish, and is idempotent", async () => {
    const s = await startServer();
    resetGate();
    const t = Tally.toDist(s.conf, 7);
    await t.inc(0);
    const held = t.hold();
    await gate.entered;
    const stopping = s.shutdown();
    expect(s.shutdown()).toBe(stopping);
    const refused = await rejection(Tally.toDist(s.conf, 1).inc());
    expect(refused.code).toBe("UNAVAILABLE");
    gate.release();
    expect(await held).toBe("done");
    await stopping;
    await s.waitUntilTerminate();
    expect(await new RpcClient(s.host, s.port).isAlive()).toBe(false);
  });

  test("launch({ inSubprocess: true }) serves from another process; shutdown ends it", async () => {
    // A subprocess re-imports each class's module: only @dist classes (which record it) can go.
    const plain = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Adder] });
    expect((await rejection(plain.launch({ inSubprocess: true }))).message).toContain("class Adder cannot be served from a subprocess");
    const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Tally, Parrot], shutdownGraceMs: 1000 });
    try {
      await l.launch({ inSubprocess: true });
      const info = await new RpcClient(l.host, l.port).getServerInfo();
      expect(info.pid).not.toBe(process.pid);
      expect(info.id).toBe(l.serverId);
      const t = Tally.toDist({ host: l.host, port: l.port }, 40);
      expect(await t.inc(2)).toBe(42);
      expect(await t.later(1)).toBe(42);
      await l.shutdown();
      await l.waitUntilTerminate();
      expect(() => process.kill(info.pid, 0)).toThrow();
    } finally {
      await l.shutdown();
    }
  });

  test("a subprocess server gets its token on stdin, never on its command line, and starts with MIMALLOC_PURGE_DELAY=-1", async () => {
    const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Tally], token: "sub-secret-token", shutdownGraceMs: 1000 });
    try {
      await l.launch({ inSubprocess: true });
      const client = new RpcClient(l.host, l.port, { token: "sub-secret-token" });
      const { pid } = await client.getServerInfo();
      const cmdline = await Bun.file(`/proc/${pid}/cmdline`).text();
      expect(cmdline).toContain("launcher/main.ts");
      expect(cmdline).not.toContain("sub-secret-token");
      // It starts with a server's allocator settings (src/core/server-env.ts).
      expect(startEnv(pid)).toContain("MIMALLOC_PURGE_DELAY=-1");
      expect((await rejection(new RpcClient("127.0.0.1", l.port).isAlive())).code).toBe("UNAUTHENTICATED");
    } finally {
      await l.shutdown();
    }
  });

  test("importing the package root never loads grpc-js", () => {
    const script = `await import(${JSON.stringify(new URL("../src/index.ts", import.meta.url).pathname)});
      console.log(Object.keys(require.cache).filter((k) => k.includes("@grpc")).length);`;
    const r = Bun.spawnSync([process.execPath, "-e", script]);
    expect(r.stderr.toString()).toBe("");
    expect(r.stdout.toString().trim()).toBe("0");
  });
});

describe("objects on a server", () => {
  test("several agents on one server keep their own state", async () => {
    const a = Tally.toDist(server.conf, 0, "a");
    const b = Tally.toDist(server.conf, 100, "b");
    await Promise.all([a.inc(1), b.inc(5), a.inc(2)]);
    expect(await a.n).toBe(3);
    expect(await b.n).toBe(105);
    expect(await a.label).toBe("a");
    expect(await b.label).toBe("b");
    expect(a.oid).not.toBe(b.oid);
  });

  test("x.toDist keeps x's oid and state; X.toDist builds from args; both on the same server", async () => {
    const local = new Tally(3, "local");
    local.inc(); // local state is not sent: the remote copy is rebuilt from constructor args
    const r = local.toDist(server.conf);
    expect(r.oid).toBe(local.oid);
    expect(r.host).toBe(server.host);
    expect(r.port).toBe(server.port);
    expect(await r.inc()).toBe(4);
    const s = Tally.toDist(server.conf, 9, "static");
    expect(await s.inc()).toBe(10);
    const ids = (await new RpcClient(server.host, server.port).getAgentList()).map((x) => x.id);
    expect(ids).toContain(r.oid);
    expect(ids).toContain(s.oid);
  });

  test("sync calls, async calls and attribute reads", async () => {
    const t = Tally.toDist(server.conf, 10, "abc");
    expect(await t.inc(5)).toBe(15);
    const fut = t.later(5);
    expect(fut).toBeInstanceOf(AsyncResult);
    expect(await fut).toBe(15);
    expect(await fut.result()).toBe(15);
    expect(await t.n).toBe(15);
    expect(await t.label).toBe("abc");
  });

  test("values round-trip over gRPC", async () => {
    const t = Tally.toDist(server.conf);
    const v = { m: new Map<unknown, unknown>([[1, "a"]]), s: new Set([1n]), d: new Date(5), u: undefined, b: new Uint8Array([1, 2, 3]), msg: new Msg({ name: "x", content: "y" }) };
    const back = (await t.echo(v)) as typeof v;
    expect(back.m.get(1)).toBe("a");
    expect(back.s.has(1n)).toBe(true);
    expect(back.d.getTime()).toBe(5);
    expect("u" in back).toBe(true);
    expect([...back.b]).toEqual([1, 2, 3]);
    expect(back.msg).toBeInstanceOf(Msg);
    expect(back.msg.id).toBe(v.msg.id);
  });

  test("an AsyncResult passed as an argument is resolved by the server", async () => {
    const t = Tally.toDist(server.conf, 8);
    expect(await t.echo(t.later(1))).toBe(8);
  });

  test("an agent's async reply over gRPC", async () => {
    const p = Parrot.toDist(server.conf, "polly");
    const m = await p.reply(new Msg({ name: "user", content: "crackers" }));
    expect(m).toBeInstanceOf(Msg);
    expect(m.content).toBe("polly heard crackers");
  });

  test("a server-held object returned by value arrives as a proxy", async () => {
    const t = Tally.toDist(server.conf, 1, "p");
    const sib = (await t.sibling()) as unknown as ReturnType<typeof Tally.toDist<Tally, []>>;
    expect(await sib.inc(1)).toBe(102);
    expect(await sib.label).toBe("p-sibling");
  });

  test("remote errors arrive typed, with the remote name, message and stack", async () => {
    const t = Tally.toDist(server.conf);
    const e = await rejection(t.fail("boom"));
    expect(e).toBeInstanceOf(AgentCallError);
    expect(e.code).toBe("UNKNOWN");
    const remote = (e as unknown as AgentCallError).remote;
    expect(remote.name).toBe("TypeError");
    expect(remote.message).toBe("boom");
    expect(remote.stack).toContain("fail");
    const later = await rejection(t.failLater("later"));
    expect(later).toBeInstanceOf(AgentCallError);
    expect((later as unknown as AgentCallError).remote.name).toBe("RangeError");
    // The server is fine afterwards.
    expect(await t.inc()).toBe(1);
  });

  test("creation errors: constructor threw (INVALID_ARGUMENT), class not served (NOT_FOUND)", async () => {
    const g = Grumpy.toDist(server.conf, "sad");
    // Grumpy has no methods: any name is an attribute read, queued behind the failed creation.
    const e = await rejection((g as unknown as { mood: AsyncResult }).mood);
    expect(e).toBeInstanceOf(AgentCreationError);
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toContain("not in the mood: sad");
    const u = Unlisted.toDist(server.conf);
    const nf = await rejection((u as unknown as { x: AsyncResult }).x);
    expect(nf).toBeInstanceOf(AgentCreationError);
    expect(nf.code).toBe("NOT_FOUND");
  });

  test("delete, then calls fail NOT_FOUND (from this proxy and from any other)", async () => {
    const t = Tally.toDist(server.conf, 1);
    await t.inc(0); // created before anyone else looks it up
    const other = connect<Tally>({ ...server.conf, oid: t.oid });
    expect(await other.inc()).toBe(2);
    await t.delete();
    const mine = await rejection(t.inc());
    expect(mine).toBeInstanceOf(NotFoundError);
    const theirs = await rejection(other.inc());
    expect(theirs).toBeInstanceOf(NotFoundError);
    expect(theirs.code).toBe("NOT_FOUND");
  });

  test("connect() reaches an existing object by oid; a missing oid is NOT_FOUND on use", async () => {
    const t = Tally.toDist(server.conf, 20);
    await t.inc(0);
    const c = connect<Tally>({ ...server.conf, oid: t.oid });
    expect(await c.inc(1)).toBe(21);
    expect(await c.later(1)).toBe(21);
    expect(await c.label).toBe("t");
    const missing = connect<Tally>({ ...server.conf, oid: "0".repeat(32) });
    const e = await rejection(missing.inc());
    expect(e).toBeInstanceOf(NotFoundError);
  });
});

describe("cancellation", () => {
  test("aborting a request cancels the gRPC call and the server-side signal", async () => {
    resetGate();
    const t = Tally.toDist(server.conf);
    await t.inc(0);
    const ctl = new AbortController();
    const conn = connectionFor(server.conf);
    const sent = conn.send({ t: "call", oid: t.oid, name: "untilCancelled", args: encodeArgs([]) }, { signal: ctl.signal });
    await gate.entered;
    ctl.abort();
    const e = await rejection(sent);
    expect(e.code).toBe("CANCELLED");
    // The method saw its call's signal abort (it releases the gate then).
    await gate.released;
  });

  test("a deadline is DEADLINE_EXCEEDED", async () => {
    resetGate();
    const t = Tally.toDist(server.conf);
    await t.inc(0);
    const sent = connectionFor(server.conf).send({ t: "call", oid: t.oid, name: "hold", args: encodeArgs([]) }, { timeoutMs: 20 });
    const e = await rejection(sent);
    expect(e.code).toBe("DEADLINE_EXCEEDED");
    gate.release();
  });
});

describe("plain classes", () => {
  test("a class given to customAgentClasses without @dist is served under its name", async () => {
    const oid = "ad".repeat(16);
    expect(await new RpcClient(server.host, server.port).createAgent({ className: "Adder" }, oid)).toBe(true);
    const a = connect<Adder>({ ...server.conf, oid });
    expect(await a.add(2, 3)).toBe(5);
  });
});

describe("limits", () => {
  test("a message over the limit is RESOURCE_EXHAUSTED and the server keeps serving", async () => {
    await using s = await startServer({ maxMessageBytes: 1024 * 1024 });
    const t = Tally.toDist(s.conf);
    expect(await t.size(new Uint8Array(512 * 1024))).toBe(512 * 1024);
    const big = await rejection(t.size(new Uint8Array(2 * 1024 * 1024)));
    expect(big).toBeInstanceOf(ResourceExhaustedError);
    expect(big.code).toBe("RESOURCE_EXHAUSTED");
    // An answer over the limit too.
    const answer = await rejection(t.blob(2 * 1024 * 1024));
    expect(answer.code).toBe("RESOURCE_EXHAUSTED");
    expect(await t.inc()).toBe(1);
  });
});

describe("token", () => {
  let secured: TestServer;
  beforeAll(async () => {
    secured = await startServer({ token: "s3cret-token" });
  });
  afterAll(() => secured.shutdown());

  test("a missing token is UNAUTHENTICATED and nothing runs", async () => {
    // 127.0.0.1 and localhost are different servers to the token table: no token here.
    const t = Tally.toDist({ host: "127.0.0.1", port: secured.port }, 1);
    const e = await rejection(t.inc());
    expect(e.code).toBe("UNAUTHENTICATED");
    expect(e.message).toContain("invalid or missing authentication token");
    const alive = await rejection(new RpcClient("127.0.0.1", secured.port).isAlive());
    expect(alive).toBeInstanceOf(UnauthenticatedError);
    expect(await new RpcClient(secured.host, secured.port, { token: "s3cret-token" }).getAgentList()).toEqual([]);
  });

  test("a wrong token is UNAUTHENTICATED with the same message; the right one works", async () => {
    const wrong = new RpcClient(secured.host, secured.port, { token: "s3cret-tokem" });
    const e = await rejection(wrong.getServerInfo());
    expect(e).toBeInstanceOf(UnauthenticatedError);
    expect(e.message).toBe("invalid or missing authentication token");
    const t = Tally.toDist({ ...secured.conf, token: "s3cret-token" }, 1);
    expect(await t.inc()).toBe(2);
  });
});

describe("a server that is not there", () => {
  test("calls fail fast with UNAVAILABLE", async () => {
    const s = await startServer();
    const port = s.port;
    await s.shutdown();
    const t0 = performance.now();
    const t = Tally.toDist({ host: "localhost", port }, 1);
    const e = await rejection(t.inc());
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.message).toContain(`localhost:${port}`);
    expect(await new RpcClient("localhost", port).isAlive()).toBe(false);
    // Fail fast: no waitForReady, no hang in reconnect backoff.
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});
