/**
 * Security, second round (issue 13), client and servicer side: a server never sends its own
 * token to an address named in a value, decoding never changes process state, a wrong token
 * on one proxy never breaks another, servers dial only allowed peers, and every table is
 * bounded (agents, connections, a dead client's queued calls). Real servers on loopback.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AgentServerError, RpcAgentServerLauncher, RpcClient, connect, type Remote } from "../../src/index.ts";
import { encodeValue } from "../../src/core/codec.ts";
import { MAX_CONNECTIONS, allowListPolicy, connectionCount, connectionFor, tokenFor } from "../../src/client/connections.ts";
import { DEFAULT_RETRY } from "../../src/client/retry.ts";
import { makeRemote } from "../../src/client/proxy.ts";
import { agentServerService } from "../../src/wire/grpc-proto.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Caller, Worker } from "../fixtures/settle-agents.ts";
import { SOURCE_CLI, startServer } from "../helpers/cli.ts";

const fixture = new URL("../fixtures/settle-agents.ts", import.meta.url).pathname;

/** A gRPC server that records the `authorization` header of every call and answers `ping` with "pong". */
async function captureServer(): Promise<{ port: number; seen: string[]; close(): void }> {
  const seen: string[] = [];
  const server = new grpc.Server();
  const note = (md: grpc.Metadata) => seen.push(String(md.get("authorization")[0] ?? "(none)"));
  const value = (v: unknown) => ({ value: encodeValue(v) });
  server.addService(agentServerService(), {
    Describe: (call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => {
      note(call.metadata);
      cb(null, value({ cls: "Capture", methods: ["ping"], async: [] }));
    },
    Call: (call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => {
      note(call.metadata);
      cb(null, value("pong"));
    },
    Batch: (call: grpc.ServerWritableStream<{ items?: object[] }, object>) => {
      note(call.metadata);
      const items = call.request.items ?? [];
      call.write({ answers: items.map((_, index) => ({ index, reply: value("pong") })) });
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, seen, close: () => server.forceShutdown() };
}

describe("a server's own credentials never leave for a peer it was handed", () => {
  let server: RpcAgentServerLauncher;
  let capture: Awaited<ReturnType<typeof captureServer>>;
  const TOKEN = `own-${crypto.randomUUID()}`;
  beforeAll(async () => {
    capture = await captureServer();
    server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Caller], token: TOKEN, shutdownGraceMs: 300 });
    await server.launch({ inSubprocess: true });
  });
  afterAll(async () => {
    capture.close();
    await server.shutdown();
  });

  test("a server calling a proxy it was handed presents no token of its own", async () => {
    const c = Caller.toDist({ host: server.host, port: server.port, token: TOKEN });
    const p = connect<{ ping(): string }>({ host: "127.0.0.1", port: capture.port, oid: "captured" });
    expect(await p.ping()).toBe("pong");
    const before = capture.seen.length;
    expect(await c.poke(p as never)).toBe("pong");
    const fromServer = capture.seen.slice(before);
    expect(fromServer.length).toBeGreaterThan(0);
    for (const h of fromServer) expect(h).not.toContain(TOKEN);
  });

  test("nor does `as-server start` with its token in AS_SERVER_TOKEN", async () => {
    const dir = mkdtempSync(join(tmpdir(), "as-cred-"));
    writeFileSync(join(dir, "agents.ts"), `export { Caller } from ${JSON.stringify(fixture)};\n`);
    const token = `env-${crypto.randomUUID()}`;
    await using cli = await startServer(SOURCE_CLI, ["--port", "0", "--agent-dir", dir], { env: { AS_SERVER_TOKEN: token } });
    const c = Caller.toDist({ host: cli.host, port: cli.port, token });
    const p = connect<{ ping(): string }>({ host: "127.0.0.1", port: capture.port, oid: "captured-2" });
    const before = capture.seen.length;
    expect(await c.poke(p as never)).toBe("pong");
    const fromServer = capture.seen.slice(before);
    expect(fromServer.length).toBeGreaterThan(0);
    for (const h of fromServer) expect(h).not.toContain(token);
  });
});

describe("credentials belong to the proxy that was given them", () => {
  let server: RpcAgentServerLauncher;
  const TOKEN = `good-${crypto.randomUUID()}`;
  beforeAll(async () => {
    server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], token: TOKEN, shutdownGraceMs: 300 });
    await server.launch({ inSubprocess: true });
  });
  afterAll(() => server.shutdown());

  test("a wrong token on one proxy never breaks a good proxy to the same server", async () => {
    const good = Worker.toDist({ host: server.host, port: server.port, token: TOKEN });
    expect(await good.echo(1)).toBe(1);
    const bad = connect<Remote<Worker>>({ host: server.host, port: server.port, oid: good.oid, token: "wrong" }) as unknown as Remote<Worker>;
    expect(((await bad.echo(2).catch((e: unknown) => e)) as AgentServerError).code).toBe("UNAUTHENTICATED");
    expect(await good.echo(3)).toBe(3);
    expect(await new RpcClient(server.host, server.port, { token: "wrong" }).isAlive().catch((e: AgentServerError) => e.code)).toBe("UNAUTHENTICATED");
    expect(await new RpcClient(server.host, server.port, { token: TOKEN }).isAlive()).toBe(true);
    expect(await good.echo(4)).toBe(4);
  });

  test("decoding a reference that carries a key for an address changes no token or TLS setting of this process", async () => {
    const good = Worker.toDist({ host: server.host, port: server.port, token: TOKEN });
    expect(await good.echo(1)).toBe(1);
    const before = tokenFor(server.host, server.port);
    // What decoding `{ $as: "ref", at: { host, port, child, key } }` does.
    connectionFor({ host: server.host, port: server.port, child: "evil", key: "attacker-key" }, { fromValue: true });
    expect(tokenFor(server.host, server.port)).toBe(before);
    expect(await good.echo(2)).toBe(2);
  });
});

describe("a server dials only the peers its policy allows", () => {
  let server: RpcAgentServerLauncher;
  beforeAll(async () => {
    server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Caller, Worker], shutdownGraceMs: 300 });
    await server.launch({ inSubprocess: true });
  });
  afterAll(() => server.shutdown());

  test("by default a reference to a non-loopback peer fails PERMISSION_DENIED at once, and nothing is dialled", async () => {
    const c = Caller.toDist({ host: server.host, port: server.port });
    // A proxy whose class is known, so it is sent without ever being contacted from here.
    const far = makeRemote<{ ping(): string }>({
      oid: "far-away",
      conn: connectionFor({ host: "peer.invalid", port: 4321 }),
      ready: Promise.resolve(),
      isReady: true,
      info: { cls: "Capture", methods: ["ping"], async: [], methodSet: new Set(["ping"]), asyncSet: new Set() },
      retry: DEFAULT_RETRY,
      maxWaitMs: 5000,
      host: "peer.invalid",
      port: 4321,
    });
    const t0 = performance.now();
    const e = (await c.poke(far as never).catch((x: unknown) => x)) as AgentServerError;
    expect(e.code).toBe("PERMISSION_DENIED");
    expect(e.message).toContain("peer.invalid:4321");
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("loopback peers are allowed by default", async () => {
    const c = Caller.toDist({ host: server.host, port: server.port });
    const w = Worker.toDist({ host: server.host, port: server.port });
    expect(await c.poke(w as never)).toBe("pong");
  });

  test("an allow-list allows loopback and what it names; 'any' allows everything", () => {
    const p = allowListPolicy(["10.0.0.5", "db.internal:7000", "[fd00::1]:9"])!;
    expect(p("127.0.0.1", 1)).toBe(true);
    expect(p("localhost", 1)).toBe(true);
    expect(p("10.0.0.5", 6000)).toBe(true);
    expect(p("db.internal", 7000)).toBe(true);
    expect(p("db.internal", 7001)).toBe(false);
    expect(p("fd00::1", 9)).toBe(true);
    expect(p("169.254.169.254", 80)).toBe(false);
    expect(allowListPolicy(undefined)!("10.0.0.5", 1)).toBe(false);
    expect(allowListPolicy("any")).toBeUndefined();
  });
});

describe("every table is bounded", () => {
  test("past maxAgents a server refuses new objects with RESOURCE_EXHAUSTED", async () => {
    const server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], maxAgents: 3, shutdownGraceMs: 300 });
    await server.launch({ inSubprocess: true });
    try {
      const ws = Array.from({ length: 3 }, () => Worker.toDist({ host: server.host, port: server.port }));
      for (const w of ws) expect(await w.echo(1)).toBe(1);
      const e = (await Worker.toDist({ host: server.host, port: server.port }).echo(1).catch((x: unknown) => x)) as AgentServerError;
      expect(e.code).toBe("RESOURCE_EXHAUSTED");
      expect(e.message).toContain("maxAgents");
      await ws[0]!.delete();
      expect(await Worker.toDist({ host: server.host, port: server.port }).echo(2)).toBe(2);
    } finally {
      await server.shutdown();
    }
  });

  test("references to thousands of distinct peers keep the connection table within its bound", () => {
    for (let i = 0; i < MAX_CONNECTIONS + 500; i++) connectionFor({ host: "127.0.0.1", port: 1 + (i % 60_000) + 1 }, { fromValue: true });
    expect(connectionCount()).toBeLessThanOrEqual(MAX_CONNECTIONS);
  });

  test("a client that dies has its queued async calls dropped; calls already running finish", async () => {
    const server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], capacity: 1, shutdownGraceMs: 300 });
    await server.launch({ inSubprocess: true });
    try {
      const script = `
        import { Worker } from ${JSON.stringify(fixture)};
        const w = Worker.toDist({ host: ${JSON.stringify(server.host)}, port: ${server.port} });
        await w.echo(0);
        const all = Array.from({ length: 300 }, () => w.slow(300));
        console.log("sent");
        await Promise.all(all);`;
      await using proc = Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "pipe" });
      const reader = proc.stdout.getReader();
      await reader.read();
      const client = new RpcClient(server.host, server.port);
      let pending = 0;
      for (let i = 0; i < 200 && pending < 250; i++) {
        pending = (await client.getServerInfo()).pending;
        if (pending < 250) await Bun.sleep(10); // polling the server's own count
      }
      expect(pending).toBeGreaterThanOrEqual(250);
      proc.kill("SIGKILL");
      await proc.exited;
      const t0 = performance.now();
      while ((await client.getServerInfo()).pending > 1 && performance.now() - t0 < 5000) await Bun.sleep(20);
      expect((await client.getServerInfo()).pending).toBeLessThanOrEqual(1);
      expect(performance.now() - t0).toBeLessThan(2000);
    } finally {
      await server.shutdown();
    }
  });
});
