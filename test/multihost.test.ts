/**
 * Multi-host, for real: three test hosts (Linux network namespaces with their own addresses,
 * see helpers/netns.ts), each running the compiled `as-server` on its own address with a
 * token; this process is a fourth machine on the same private network. Covers the seed
 * scenario spread over the hosts, pipelining and proxies from host to host (references carry
 * the reachable addresses), and a host cut off or killed while the others keep serving.
 *
 * Needs root and iproute2: without them these tests are skipped with the reason, except in CI
 * (CI=true), where they fail with it.
 */
import { afterAll, expect } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentBase, Msg, RpcClient, ServerGroup, asyncFunc, dist, withOptions, type Remote } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { rejection } from "./helpers/grpc.ts";
import { REPO, runCli, type RunningServer } from "./helpers/cli.ts";
// describe/test/beforeAll skip (with the reason) without root + iproute2, never in CI.
import { beforeAll, compiledServer, createTestNet, describe, test, whenProcessGone, type TestNet } from "./helpers/netns.ts";

/** Loaded by every server from its --agent-dir (written below). */
const AGENT_FILE = `import { AgentBase, Msg, asyncFunc, dist } from "actorscope";
import { networkInterfaces } from "node:os";

/** This host's address on the test network: its one non-loopback IPv4. */
function here(): string {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  return "unknown";
}

@dist
export class MhAgent extends AgentBase {
  readonly seconds: number;
  constructor(name: string, seconds = 0) {
    super(name);
    this.seconds = seconds;
  }
  where(): string {
    return here();
  }
  /** The seed's WebAgent: blocking work, then answer; x may be another host's pending reply. */
  @asyncFunc
  async reply(x?: Msg): Promise<Msg> {
    const m = await x;
    if (this.seconds > 0) Bun.sleepSync(this.seconds * 1000);
    const before = typeof m?.content === "string" ? m.content : "";
    return new Msg({ name: this.name, role: "assistant", content: before + "|" + this.name + "@" + here() });
  }
  /** A new agent on this server, returned by value: it arrives as a proxy to this host. */
  helper(name: string): MhAgent {
    return new MhAgent(name);
  }
  /** Ask an agent handed over as a proxy (it may live on another host). */
  async ask(other: MhAgent, text: string): Promise<string> {
    const r = await other.reply(new Msg({ name: this.name, content: text }));
    return String(r.content);
  }
}
`;

/** Client-side twin of the servers' MhAgent: only its name and method kinds matter here. */
@dist
class MhAgent extends AgentBase {
  constructor(name: string, readonly seconds = 0) {
    super(name);
  }
  where(): string {
    throw new Error("runs on the servers only");
  }
  @asyncFunc
  override async reply(_x?: Msg): Promise<Msg> {
    throw new Error("runs on the servers only");
  }
  helper(_name: string): MhAgent {
    throw new Error("runs on the servers only");
  }
  async ask(_other: MhAgent, _text: string): Promise<string> {
    throw new Error("runs on the servers only");
  }
}

const TOKEN = `mh-${crypto.randomUUID()}`;
const PORT = "12310";
const scratch = mkdtempSync(join(tmpdir(), "as-mh-test-"));
// afterAll removes it; this covers a runner that dies first.
whenProcessGone(`rm -rf '${scratch}'`);
let net: TestNet;
let bin = "";
let agentDir = "";
let servers: RunningServer[] = [];
let group: ServerGroup;
/** One agent per host, placed by a fresh round-robin group: a on h1, b on h2, c on h3. */
let a: Remote<MhAgent>, b: Remote<MhAgent>, c: Remote<MhAgent>;

const msg = (content: string) => new Msg({ name: "user", role: "user", content });
const addrs = () => net.hosts.map((h) => h.addr) as [string, string, string];

beforeAll(async () => {
  net = await createTestNet(3);
  bin = await compiledServer();
  const agents = (agentDir = join(scratch, "agents"));
  const bare = join(scratch, "bare");
  mkdirSync(agents, { recursive: true });
  mkdirSync(bare, { recursive: true });
  writeFileSync(join(agents, "mh-agent.ts"), AGENT_FILE);
  // Same port on every host, as on real machines; the token guards each server, and the
  // servers present it to each other (AS_CLIENT_TOKEN) when one resolves another's reference;
  // each may dial only the others (--allow-peers).
  servers = await Promise.all(
    net.hosts.map((h) =>
      net.startServer(h, bin, ["--host", h.addr, "--port", PORT, "--token", TOKEN, "--agent-dir", agents, "--allow-peers", net.hosts.map((x) => x.addr).join(",")], { cwd: bare, env: { AS_CLIENT_TOKEN: TOKEN } }),
    ),
  );
  group = new ServerGroup(
    servers.map((s) => ({ host: s.host, port: s.port })),
    { token: TOKEN },
  );
  [a, b, c] = ["a", "b", "c"].map((n) => MhAgent.toDist(group, n)) as [Remote<MhAgent>, Remote<MhAgent>, Remote<MhAgent>];
}, 60_000);

afterAll(async () => {
  await closeAllConnections();
  await net?.destroy();
  rmSync(scratch, { recursive: true, force: true });
});

describe("three hosts", () => {
  test("each server listens on its host's own address, with a token", async () => {
    expect(servers.map((s) => `${s.host}:${s.port}`)).toEqual(addrs().map((h) => `${h}:${PORT}`));
    const infos = await Promise.all(servers.map((s) => new RpcClient(s.host, s.port, { token: TOKEN }).getServerInfo()));
    expect(new Set(infos.map((i) => i.pid)).size).toBe(3);
    expect(await Promise.all([a, b, c].map((x) => x.where()))).toEqual(addrs());
    expect([a.host, b.host, c.host]).toEqual(addrs());
    // A token given to a client is the process's token for that server: put the right one back.
    const [h, p] = [servers[0]!.host, servers[0]!.port];
    const e = await rejection(new RpcClient(h, p, { token: "wrong" }).getServerInfo());
    expect(e.code).toBe("UNAUTHENTICATED");
    expect(await new RpcClient(h, p, { token: TOKEN }).isAlive()).toBe(true);
  });

  test("the seed scenario spread over the hosts: blocking work overlaps across machines", async () => {
    const S = 0.4;
    const g = new ServerGroup(
      servers.map((s) => ({ host: s.host, port: s.port })),
      { token: TOKEN },
    );
    const t0 = performance.now();
    const workers = Array.from({ length: 6 }, (_, i) => MhAgent.toDist(g, `W${i}`, S));
    await Promise.all(workers.map((w) => w.name));
    const initMs = performance.now() - t0;
    const t1 = performance.now();
    const replies = workers.map((w) => w.reply(msg("q")));
    const contents = (await Promise.all(replies)).map((r) => r.content);
    const runS = (performance.now() - t1) / 1000;
    // Two agents per host: 2·S (their work is blocking on each host), not the 6·S of one machine.
    expect(runS).toBeGreaterThanOrEqual(2 * S - 0.05);
    expect(runS).toBeLessThan(2 * S + 0.6);
    expect(initMs).toBeLessThan(2000);
    contents.forEach((cnt, i) => expect(cnt).toBe(`q|W${i}@${addrs()[i % 3]}`));
    await Promise.all(workers.map((w) => w.delete()));
  });

  test("pipelining: a chain h1 → h2 → h3 is submitted at once and resolved by the servers", async () => {
    const S = 0.2;
    const g = new ServerGroup(
      servers.map((s) => ({ host: s.host, port: s.port })),
      { token: TOKEN },
    );
    const [x, y, z] = ["x", "y", "z"].map((n) => MhAgent.toDist(g, n, S)) as [Remote<MhAgent>, Remote<MhAgent>, Remote<MhAgent>];
    await Promise.all([x.name, y.name, z.name]);
    const t0 = performance.now();
    const rx = x.reply(msg("q"));
    const ry = y.reply(rx);
    const rz = z.reply(ry);
    // Submitted without waiting for any result (each takes S on its host).
    expect(performance.now() - t0).toBeLessThan(S * 1000);
    const [h1, h2, h3] = addrs();
    expect((await rz).content).toBe(`q|x@${h1}|y@${h2}|z@${h3}`);
    expect((await rx).content).toBe(`q|x@${h1}`);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(3 * S * 1000 - 50);
    await Promise.all([x, y, z].map((p) => p.delete()));
  });

  test("proxies handed from host to host name the reachable address, never localhost", async () => {
    const [h1, , h3] = addrs();
    const helper = await a.helper("helper");
    expect(helper.host).toBe(h1);
    expect(helper.port).toBe(Number(PORT));
    expect(await helper.where()).toBe(h1);
    // h2 calls the object on h1 directly; h1 calls the object on h3 that this client made.
    expect(await b.ask(helper, "hi")).toBe(`hi|helper@${h1}`);
    expect(await a.ask(c, "yo")).toBe(`yo|c@${h3}`);
    await helper.delete();
  });
});

describe("deploy script", () => {
  test("launch-workers.sh starts a server on each host over 'ssh', writes the servers list a ServerGroup reads, reports status and stops them", async () => {
    // "ssh" into a test host = run the command inside its namespace; "scp" = cp (one filesystem).
    const ssh = join(scratch, "ssh-netns");
    const cases = net.hosts.map((h) => `  ${h.addr}) ns=${h.ns} ;;`).join("\n");
    writeFileSync(ssh, `#!/bin/sh\ntarget="$1"; shift\ncase "$target" in\n${cases}\n  *) echo "unknown host $target" >&2; exit 255 ;;\nesac\nexec ip netns exec "$ns" sh -c "$*"\n`);
    const scp = join(scratch, "scp-cp");
    writeFileSync(scp, `#!/bin/sh\nexec cp "$1" "\${2#*:}"\n`);
    chmodSync(ssh, 0o755);
    chmodSync(scp, 0o755);
    const hostsFile = join(scratch, "hosts.txt");
    writeFileSync(hostsFile, `# test hosts\n${net.hosts.map((h) => `${h.addr} 12311`).join("\n")}\n`);
    const out = join(scratch, "servers.txt");
    const token = `deploy-${crypto.randomUUID()}`;
    const env = { BIN: bin, AGENT_DIR: agentDir, REMOTE_DIR: join(scratch, "deploy", "%h"), OUT: out, SSH: ssh, SCP: scp, AS_SERVER_TOKEN: token };
    const script = join(REPO, "examples/deploy/launch-workers.sh");
    const started = await runCli(["bash", script], ["start", hostsFile], { env, timeoutMs: 60_000 });
    expect(started.code, started.stderr).toBe(0);
    expect(readFileSync(out, "utf8")).toBe(addrs().map((h) => `${h}:12311\n`).join(""));
    // The token never reached a command line, and the servers list is all a client needs.
    expect(readFileSync(join(scratch, "deploy", addrs()[0], "token"), "utf8")).toBe(token);
    const g = await ServerGroup.fromFile(out, { token });
    const placed = ["d1", "d2", "d3"].map((n) => MhAgent.toDist(g, n));
    expect(await Promise.all(placed.map((p) => p.where()))).toEqual(addrs());
    expect(placed.map((p) => p.port)).toEqual([12311, 12311, 12311]);
    const status = await runCli(["bash", script], ["status", hostsFile], { env });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout.match(/MhAgent/g)).toHaveLength(3);
    const stopped = await runCli(["bash", script], ["stop", hostsFile], { env });
    expect(stopped.code, stopped.stderr).toBe(0);
    for (const h of addrs()) {
      const c = new RpcClient(h, 12311, { token });
      for (let i = 0; i < 50 && (await c.isAlive()); i++) await Bun.sleep(100);
      expect(await c.isAlive()).toBe(false);
    }
  }, 60_000);

  test("launch-workers.sh refuses to start without a token and rejects an unknown command", async () => {
    const script = join(REPO, "examples/deploy/launch-workers.sh");
    const hostsFile = join(scratch, "hosts-bad.txt");
    writeFileSync(hostsFile, `${addrs()[0]} 12312\n`);
    const noToken = await runCli(["bash", script], ["start", hostsFile], { env: { BIN: bin, AS_SERVER_TOKEN: "" } });
    expect(noToken.code).not.toBe(0);
    expect(noToken.stderr).toMatch(/AS_SERVER_TOKEN/);
    const usage = await runCli(["bash", script], ["launch", hostsFile]);
    expect(usage.code).toBe(2);
  });
});

describe("failures", () => {
  test("a host cut off: its calls fail DEADLINE_EXCEEDED in bounded time, the others keep serving, it comes back", async () => {
    const [h1, h2, h3] = addrs();
    const cut = net.hosts[1]!;
    net.cut(cut);
    try {
      const t0 = performance.now();
      const [syncErr, asyncErr, others] = await Promise.all([
        rejection(withOptions(b, { timeoutMs: 1000 }).where()),
        rejection(withOptions(b, { timeoutMs: 1000 }).reply(msg("lost"))),
        Promise.all([a.where(), c.where()]),
      ]);
      const ms = performance.now() - t0;
      expect(syncErr.code).toBe("DEADLINE_EXCEEDED");
      expect(asyncErr.code).toBe("DEADLINE_EXCEEDED");
      expect(others).toEqual([h1, h3]);
      expect(ms).toBeLessThan(2500);
      // Placement notices too: creations that get no answer go to the other hosts.
      const g = new ServerGroup(
        servers.map((s) => ({ host: s.host, port: s.port })),
        { token: TOKEN, createTimeoutMs: 800 },
      );
      const placed = Array.from({ length: 3 }, (_, i) => MhAgent.toDist(g, `p${i}`));
      const where = await Promise.all(placed.map((p) => p.where()));
      expect(where.filter((w) => w === h2)).toEqual([]);
      expect(g.status()[1]).toMatchObject({ alive: false, error: expect.stringMatching(/DEADLINE_EXCEEDED/) });
      await Promise.all(placed.map((p) => p.delete()));
    } finally {
      net.reconnect(cut);
    }
    expect(await withOptions(b, { timeoutMs: 15_000 }).where()).toBe(h2);
  });

  test("a host killed: its calls fail UNAVAILABLE at once, the others keep serving, placement goes elsewhere", async () => {
    const [h1, h2] = addrs();
    await servers[2]!.stop("SIGKILL");
    const t0 = performance.now();
    const e = await rejection(c.where());
    expect(e.code).toBe("UNAVAILABLE");
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(await Promise.all([a.where(), b.where()])).toEqual([h1, h2]);
    const placed = Array.from({ length: 4 }, (_, i) => MhAgent.toDist(group, `k${i}`));
    expect((await Promise.all(placed.map((p) => p.where()))).sort()).toEqual([h1, h1, h2, h2]);
    expect(group.status()[2]!.alive).toBe(false);
  });
});
