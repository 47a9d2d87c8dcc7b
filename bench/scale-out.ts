#!/usr/bin/env bun
/**
 * Scale-out: a million agents across four `as-server` processes on one machine (the compiled
 * binary, each with a small --agent-dir holding a tiny agent class), placed with a
 * `ServerGroup`. Two ways to get there, measured side by side:
 *
 * 1. **The plain API**, one request per operation: `Cell.toDist(group, i)` for every agent with
 *    `--window` creations in flight, then a round of one sync call per agent (`await
 *    cell.tick(1)`), then one of async calls (call + wait). The gRPC transport batches the
 *    requests issued in one tick into one RPC. Rate, and the CPU each operation costs the
 *    client and the servers (from /proc), which says what limits it.
 * 2. **Bulk**, a stand-in for `createMany` / `callMany` requests: a `Hub` object on each server
 *    creates `--chunk` agents per request (returned by value, so the server holds them and the
 *    client gets proxies) and calls every agent of a chunk it is handed (references to its own
 *    objects arrive as the objects). The group picks the server of each chunk
 *    (`ServerGroup.pick(n)`).
 *
 * 3. **Chaos**, after the plain API's rounds: another async round, and one server is killed
 *    (SIGKILL) a third of the way through. Calls to its agents must fail UNAVAILABLE within
 *    1 s; every other call must return its right value. `--no-chaos` skips it.
 *
 * Memory per idle agent: each server's RSS from `getServerInfo()` before/after, and its heap
 * and RSS after a full GC (`Hub.memory()`), over the agents it holds. The client's RSS per proxy.
 *
 *   bun bench/scale-out.ts [--quick] [--agents N] [--rpc-agents N] [--bulk-agents N] [--servers 4]
 *                          [--chunk 10000] [--window 2048] [--strategy round-robin|least-loaded]
 *                          [--no-chaos] [--bin PATH | --source]   (--help lists them)
 *
 * Full run: 1,000,000 agents each way; --quick: 100,000. Results go to
 * bench/results-scale-out.json. Servers listen on loopback only.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Distributable, RpcClient, ServerGroup, asyncFunc, dist, type PlacementStrategy, type Remote, type ServerInfo } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { remoteState } from "../src/client/proxy-state.ts";

/** The servers' agent file: the tiny agent, and the bulk helper. */
const AGENT_FILE = `import { Distributable, asyncFunc, dist } from "actorscope";

/** A tiny agent: one number. */
@dist
export class Cell extends Distributable {
  v: number;
  constructor(v = 0) {
    super();
    this.v = v;
  }
  tick(by: number): number {
    return (this.v += by);
  }
  @asyncFunc
  atick(by: number): number {
    return (this.v += by);
  }
}

/** Bulk operations inside one server: what createMany / callMany requests would do. */
@dist
export class Hub extends Distributable {
  /** n new Cells; returned by value, so this server holds them and the caller gets proxies. */
  spawn(n: number, first: number): Cell[] {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = new Cell(first + i);
    return out;
  }
  /** Call tick(by) on every Cell handed over (references to this server's objects arrive as the objects). */
  tickAll(cells: Cell[], by: number): number {
    let sum = 0;
    for (const c of cells) sum += c.tick(by);
    return sum;
  }
  /** Heap and RSS after a full GC, bytes. */
  memory(): { rss: number; heap: number } {
    Bun.gc(true);
    const m = process.memoryUsage();
    return { rss: m.rss, heap: m.heapUsed };
  }
}
`;

/** Client-side twins: only names and method kinds matter. */
@dist
class Cell extends Distributable {
  constructor(readonly v = 0) {
    super();
  }
  tick(_by: number): number {
    throw new Error("runs on the servers");
  }
  @asyncFunc
  atick(_by: number): number {
    throw new Error("runs on the servers");
  }
}

@dist
class Hub extends Distributable {
  spawn(_n: number, _first: number): Cell[] {
    throw new Error("runs on the servers");
  }
  tickAll(_cells: Cell[], _by: number): number {
    throw new Error("runs on the servers");
  }
  memory(): { rss: number; heap: number } {
    throw new Error("runs on the servers");
  }
}

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    agents: { type: "string" },
    "rpc-agents": { type: "string" },
    "bulk-agents": { type: "string" },
    servers: { type: "string", default: "4" },
    chunk: { type: "string", default: "10000" },
    window: { type: "string", default: "2048" },
    strategy: { type: "string", default: "round-robin" },
    bin: { type: "string" },
    source: { type: "boolean", default: false },
    chaos: { type: "boolean", default: true },
    "no-chaos": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (flags.help) {
  console.log(`bun bench/scale-out.ts [options]

  --quick                 100,000 agents each way instead of 1,000,000
  --agents N              agents for both phases
  --rpc-agents N          agents of the plain-API phase (0 skips it)
  --bulk-agents N         agents of the bulk phase (0 skips it)
  --servers N             as-server processes (default 4)
  --chunk N               agents per bulk request (default 10000)
  --window N              operations in flight in the plain phase (default 2048)
  --strategy S            round-robin | least-loaded (default round-robin)
  --no-chaos              skip the chaos round (kill -9 one server mid-round)
  --bin PATH | --source   the as-server binary to run, or bin/as-server.ts from source
                          (default: a fresh build into a temp dir)`);
  process.exit(0);
}
const CHAOS = flags.chaos && !flags["no-chaos"];
const int = (v: string | undefined, name: string, dflt: number): number => {
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
  return n;
};
const ALL = int(flags.agents, "agents", flags.quick ? 100_000 : 1_000_000);
const M = int(flags["rpc-agents"], "rpc-agents", ALL);
const N = int(flags["bulk-agents"], "bulk-agents", ALL);
const SERVERS = int(flags.servers, "servers", 4);
const CHUNK = int(flags.chunk, "chunk", 10_000);
const WINDOW = int(flags.window, "window", 2048);
const STRATEGY = flags.strategy as PlacementStrategy;
const ROOT = resolve(import.meta.dir, "..");
const CLK_TCK = 100;

interface Server {
  proc: ReturnType<typeof Bun.spawn>;
  host: string;
  port: number;
  client: RpcClient;
}

interface Row {
  name: string;
  value: number;
  unit: string;
  note?: string;
}
const rows: Row[] = [];
function row(name: string, value: number, unit: string, note?: string): void {
  rows.push(note === undefined ? { name, value, unit } : { name, value, unit, note });
  const v = value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(3);
  console.log(`  ${name.padEnd(58)} ${`${v} ${unit}`.padStart(16)}${note ? `   ${note}` : ""}`);
}

/** The as-server command: --bin, AS_SERVER_BIN, --source, or a fresh build into a temp dir. */
async function serverCommand(scratch: string): Promise<string[]> {
  if (flags.bin) return [resolve(flags.bin)];
  if (process.env.AS_SERVER_BIN) return [process.env.AS_SERVER_BIN];
  if (flags.source) return [process.execPath, join(ROOT, "bin/as-server.ts")];
  const bin = join(scratch, "as-server");
  const p = Bun.spawn([process.execPath, join(ROOT, "scripts/build.ts"), "--outfile", bin], { stdout: "pipe", stderr: "pipe" });
  if ((await p.exited) !== 0) throw new Error(`build failed:\n${await new Response(p.stderr).text()}`);
  return [bin];
}

async function startServer(cmd: string[], agentDir: string, cwd: string): Promise<Server> {
  // The default result pool (8192 pending-or-unread results, none evicted unread) is enough:
  // a full pool refuses new calls for a moment and the client resubmits them (backpressure).
  const args = ["start", "--port", "0", "--agent-dir", agentDir, "--max-queue", String(Math.max(65_536, 2 * WINDOW))];
  const proc = Bun.spawn([...cmd, ...args], { cwd, stdin: "ignore", stdout: "pipe", stderr: "inherit", env: { ...process.env, NO_COLOR: "1" } });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`as-server exited before listening:\n${buf}`);
    buf += dec.decode(value, { stream: true });
    const m = /listening on (\S+):(\d+)/.exec(buf);
    if (m) {
      // Keep draining its stdout so the server never blocks on a full pipe.
      void (async () => {
        while (!(await reader.read()).done);
      })();
      return { proc, host: m[1]!, port: Number(m[2]), client: new RpcClient(m[1]!, Number(m[2])) };
    }
  }
}

/** CPU seconds used so far by this process and by the servers. */
function cpu(servers: Server[]): { client: number; servers: number } {
  const u = process.cpuUsage();
  let s = 0;
  for (const srv of servers) {
    const f = readFileSync(`/proc/${srv.proc.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    s += (Number(f[11]) + Number(f[12])) / CLK_TCK;
  }
  return { client: (u.user + u.system) / 1e6, servers: s };
}

function cpuNote(a: ReturnType<typeof cpu>, b: ReturnType<typeof cpu>, n: number, wallS: number): string {
  const c = ((b.client - a.client) / n) * 1e6;
  const s = ((b.servers - a.servers) / n) * 1e6;
  const busy = (b.client - a.client + b.servers - a.servers) / wallS;
  return `CPU per op: client ${c.toFixed(1)} µs + servers ${s.toFixed(1)} µs; ${busy.toFixed(2)} of ${cpus().length} cores busy`;
}

/** The longest event-loop stall of this process while `f` runs (GC pauses show up here), ms. */
async function withStallWatch<T>(f: () => Promise<T>): Promise<{ value: T; maxStallMs: number }> {
  let last = performance.now();
  let max = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last - 50);
    last = now;
  }, 50);
  try {
    return { value: await f(), maxStallMs: max };
  } finally {
    clearInterval(timer);
  }
}

/** Run `n` operations keeping `window` in flight. */
async function pump(n: number, window: number, op: (i: number) => PromiseLike<unknown>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
}

const sizes = async (servers: Server[]): Promise<ServerInfo[]> => Promise.all(servers.map((s) => s.client.getServerInfo()));
const mib = (b: number) => (b / 2 ** 20).toFixed(1);

/** One hub per server, placed by the group (it must spread them), by "host:port". */
async function placeHubs(servers: Server[], group: ServerGroup): Promise<Map<string, Remote<Hub>>> {
  const hubs = servers.map(() => Hub.toDist(group));
  await Promise.all(hubs.map((h) => remoteState(h)!.ready));
  const byServer = new Map(hubs.map((h) => [`${h.host}:${h.port}`, h]));
  if (byServer.size !== servers.length) throw new Error("the group did not put one hub on each server");
  return byServer;
}

interface Snapshot {
  info: ServerInfo[];
  gc: { rss: number; heap: number }[];
  clientRss: number;
}

async function snapshot(servers: Server[], hubs: Map<string, Remote<Hub>>): Promise<Snapshot> {
  await Bun.sleep(200);
  Bun.gc(true);
  const info = await sizes(servers);
  const gc = await Promise.all(servers.map((s) => hubs.get(`${s.host}:${s.port}`)!.memory()));
  return { info, gc, clientRss: process.memoryUsage.rss() };
}

/** Memory rows: what `n` more idle agents cost the servers and the client. */
function memoryRows(label: string, a: Snapshot, b: Snapshot, n: number): void {
  const held = b.info.reduce((x, i, k) => x + i.size - a.info[k]!.size, 0);
  if (held !== n) throw new Error(`servers hold ${held} new agents, expected ${n}`);
  const infoRss = (b.info.reduce((x, i, k) => x + i.mem - a.info[k]!.mem, 0) * 2 ** 20) / n;
  const gcRss = b.gc.reduce((x, m, k) => x + m.rss - a.gc[k]!.rss, 0) / n;
  const heap = b.gc.reduce((x, m, k) => x + m.heap - a.gc[k]!.heap, 0) / n;
  row(`${label}: server RSS per idle agent (getServerInfo)`, infoRss, "B", `RSS ${a.info.map((i) => i.mem).join("/")} → ${b.info.map((i) => i.mem).join("/")} MiB; sizes ${b.info.map((i) => i.size).join("/")}`);
  row(`${label}: server RSS per idle agent after full GC`, gcRss, "B", `${b.gc.map((m) => mib(m.rss)).join("/")} MiB`);
  row(`${label}: server JS heap per idle agent after full GC`, heap, "B", `${b.gc.map((m) => mib(m.heap)).join("/")} MiB`);
  row(`${label}: client RSS per proxy (after a full GC)`, (b.clientRss - a.clientRss) / n, "B");
}

/** The plain API: one creation per agent, then rounds of one sync and one async call per agent. */
async function perRpc(servers: Server[], group: ServerGroup): Promise<void> {
  console.log(`\nplain API, one request per operation: ${M.toLocaleString("en")} agents, ${WINDOW} in flight, ${STRATEGY}`);
  const hubs = await placeHubs(servers, group);
  const before = await snapshot(servers, hubs);
  let agents = new Array<Remote<Cell>>(M);
  let c0 = cpu(servers);
  let t = performance.now();
  await pump(M, WINDOW, (i) => remoteState((agents[i] = Cell.toDist(group, i)))!.ready);
  let s = (performance.now() - t) / 1000;
  row("plain: creation rate (Cell.toDist(group, i))", M / s, "agents/s", `${s.toFixed(2)} s; ${cpuNote(c0, cpu(servers), M, s)}`);
  memoryRows("plain", before, await snapshot(servers, hubs), M);
  for (const kind of ["sync", "async"] as const) {
    c0 = cpu(servers);
    t = performance.now();
    let sum = 0;
    let failed = 0;
    let firstError = "";
    const { maxStallMs } = await withStallWatch(() =>
      pump(M, WINDOW, async (i) => {
        try {
          const r = await (kind === "sync" ? agents[i]!.tick(1) : agents[i]!.atick(1));
          sum += r;
        } catch (e) {
          // Counted and reported, not fatal: the round's figure says how many did not make it.
          failed++;
          firstError ||= `${(e as { code?: string }).code ?? ""} ${(e as Error).message}`.slice(0, 160);
        }
      }),
    );
    s = (performance.now() - t) / 1000;
    const want = kind === "sync" ? (M * (M - 1)) / 2 + M : (M * (M - 1)) / 2 + 2 * M;
    if (failed === 0 && sum !== want) throw new Error(`${kind} round sum ${sum} is wrong (want ${want})`);
    const what = kind === "sync" ? "one sync call per agent" : "one async call per agent (call + wait)";
    const problems = failed ? `; ${failed} FAILED (first: ${firstError})` : "";
    row(`plain: round, ${what}`, s, "s", `${Math.round(M / s).toLocaleString("en")} calls/s; ${cpuNote(c0, cpu(servers), M, s)}; longest client stall ${maxStallMs.toFixed(0)} ms${problems}`);
  }
  const victim = CHAOS && servers.length > 1 ? await chaosRound(servers, agents) : undefined;
  agents = [];
  await Promise.all(servers.filter((srv) => srv !== victim).map((srv) => srv.client.deleteAllAgents()));
}

/**
 * Chaos: a round of one async call per agent, and one of the servers is killed (SIGKILL) a
 * third of the way through. Calls to its agents must fail UNAVAILABLE within 1 s of the kill
 * (or of being made, if made after it); every other call must return its right value.
 * Returns the killed server.
 */
async function chaosRound(servers: Server[], agents: Remote<Cell>[]): Promise<Server> {
  const victim = servers[servers.length - 1]!;
  const victimKey = `${victim.host}:${victim.port}`;
  const n = agents.length;
  const live = { calls: 0, ok: 0, failed: 0, wrong: 0 };
  const dead = { calls: 0, okBeforeKill: 0, unavailable: 0, other: 0, latestMs: 0, wrong: 0 };
  let firstProblem = "";
  let killAt = 0;
  let settled = 0;
  console.log(`\nchaos round: one async call per agent; kill -9 of ${victimKey} (pid ${victim.proc.pid}) a third of the way through`);
  const t = performance.now();
  await pump(n, WINDOW, async (i) => {
    const a = agents[i]!;
    const onVictim = `${a.host}:${a.port}` === victimKey;
    const issuedAt = performance.now();
    if (onVictim) dead.calls++;
    else live.calls++;
    try {
      // Before this round: tick(1) and atick(1), so agent i holds i + 2.
      const v = await a.atick(1);
      if (v !== i + 3) {
        (onVictim ? dead : live).wrong++;
        firstProblem ||= `agent ${i}: ${v}, want ${i + 3}`;
      } else if (onVictim) dead.okBeforeKill++;
      else live.ok++;
    } catch (e) {
      const code = (e as { code?: string }).code ?? "";
      if (!onVictim) {
        live.failed++;
        firstProblem ||= `live server: ${code} ${(e as Error).message}`.slice(0, 200);
      } else if (code === "UNAVAILABLE" && killAt > 0) {
        dead.unavailable++;
        dead.latestMs = Math.max(dead.latestMs, performance.now() - Math.max(killAt, issuedAt));
      } else {
        dead.other++;
        firstProblem ||= `killed server: ${code} ${(e as Error).message}`.slice(0, 200);
      }
    }
    if (++settled === Math.floor(n / 3)) {
      killAt = performance.now();
      victim.proc.kill("SIGKILL");
    }
  });
  const s = (performance.now() - t) / 1000;
  row(
    "chaos: round with one server killed mid-round",
    s,
    "s",
    `live servers: ${live.calls} calls, ${live.ok} right, ${live.failed} failed, ${live.wrong} wrong; killed server: ${dead.calls} calls, ${dead.okBeforeKill} right before the kill, ${dead.unavailable} UNAVAILABLE (latest ${dead.latestMs.toFixed(0)} ms after the kill or the call), ${dead.other} other errors, ${dead.wrong} wrong${firstProblem ? `; first problem: ${firstProblem}` : ""}`,
  );
  row("chaos: calls to live servers that failed or were wrong", live.failed + live.wrong, "calls");
  row("chaos: slowest UNAVAILABLE after the kill", dead.latestMs, "ms");
  return victim;
}

/** Bulk creation through per-server hubs, memory, and a bulk round. */
async function bulk(servers: Server[], group: ServerGroup): Promise<void> {
  console.log(`\nbulk (createMany / callMany stand-in): ${N.toLocaleString("en")} agents in chunks of ${CHUNK.toLocaleString("en")}, ${STRATEGY}`);
  const hubOf = await placeHubs(servers, group);
  const before = await snapshot(servers, hubOf);
  const held = new Map<Remote<Hub>, Remote<Cell>[]>([...hubOf.values()].map((h) => [h, []]));
  const chunks = Math.ceil(N / CHUNK);
  let next = 0;
  const c0 = cpu(servers);
  const t = performance.now();
  // Two chunks in flight per server: one being built there while the other travels.
  await Promise.all(
    Array.from({ length: 2 * servers.length }, async () => {
      for (;;) {
        const j = next++;
        if (j >= chunks) return;
        const n = Math.min(CHUNK, N - j * CHUNK);
        const at = await group.pick(n);
        const hub = hubOf.get(`${at.host}:${at.port}`)!;
        const cells = (await hub.spawn(n, j * CHUNK)) as Remote<Cell>[];
        held.get(hub)!.push(...cells);
      }
    }),
  );
  const s = (performance.now() - t) / 1000;
  row("bulk: creation rate", N / s, "agents/s", `${s.toFixed(2)} s; ${cpuNote(c0, cpu(servers), N, s)}`);
  memoryRows("bulk", before, await snapshot(servers, hubOf), N);

  const c1 = cpu(servers);
  const t1 = performance.now();
  const sums = await Promise.all(
    [...held].map(async ([hub, cells]) => {
      let sum = 0;
      const parts = Array.from({ length: Math.ceil(cells.length / CHUNK) }, (_, i) => cells.slice(i * CHUNK, (i + 1) * CHUNK));
      await pump(parts.length, 2, async (i) => {
        const r = await hub.tickAll(parts[i] as unknown as Cell[], 1);
        sum += r;
      });
      return sum;
    }),
  );
  const s1 = (performance.now() - t1) / 1000;
  const sum = sums.reduce((a, b) => a + b, 0);
  if (sum !== (N * (N - 1)) / 2 + N) throw new Error(`round sum ${sum} is wrong`);
  row("bulk: round, every agent called once", s1, "s", `${Math.round(N / s1).toLocaleString("en")} calls/s; ${cpuNote(c1, cpu(servers), N, s1)}`);
  held.clear();
  await Promise.all(servers.map((srv) => srv.client.deleteAllAgents()));
}

/** Start `SERVERS` fresh servers, run `phase` with a group over them, then kill them. */
async function withServers(cmd: string[], agentDir: string, cwd: string, phase: (servers: Server[], group: ServerGroup) => Promise<void>): Promise<void> {
  const servers: Server[] = [];
  try {
    servers.push(...(await Promise.all(Array.from({ length: SERVERS }, () => startServer(cmd, agentDir, cwd)))));
    const group = new ServerGroup(
      servers.map((s) => ({ host: s.host, port: s.port })),
      { strategy: STRATEGY },
    );
    await phase(servers, group);
  } finally {
    for (const s of servers) s.proc.kill("SIGKILL");
    await Promise.all(servers.map((s) => s.proc.exited));
    await closeAllConnections();
  }
}

if (import.meta.main) {
  if (STRATEGY !== "round-robin" && STRATEGY !== "least-loaded") throw new Error("--strategy must be round-robin or least-loaded");
  const scratch = mkdtempSync(join(tmpdir(), "as-scale-out-"));
  try {
    const agentDir = join(scratch, "agents");
    mkdirSync(agentDir);
    writeFileSync(join(agentDir, "cell.ts"), AGENT_FILE);
    const cmd = await serverCommand(scratch);
    console.log(`scale-out: ${SERVERS} × ${cmd.length > 1 ? "bun bin/as-server.ts" : "compiled as-server"} on ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB; bun ${Bun.version}`);
    // Each phase on fresh servers, so neither inherits the other's heap or result pool.
    if (M > 0) await withServers(cmd, agentDir, scratch, perRpc);
    if (N > 0) await withServers(cmd, agentDir, scratch, bulk);
    const out = join(import.meta.dir, "results-scale-out.json");
    const machine = { bun: Bun.version, cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), date: new Date().toISOString() };
    writeFileSync(out, `${JSON.stringify({ machine, config: { rpcAgents: M, bulkAgents: N, servers: SERVERS, chunk: CHUNK, window: WINDOW, strategy: STRATEGY }, rows }, null, 2)}\n`);
    console.log(`\nwrote ${out}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  process.exit(0);
}
