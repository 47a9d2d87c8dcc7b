/**
 * Supervision (issue 18): how long a crashed agent is away, and what snapshots cost.
 * - child mode: kill -9 of the child → the first successful call (on a new child, state restored);
 * - group mode: kill -9 of the server holding the object → the first successful call (the
 *   object re-created on the other server of a group of two);
 * - the per-call cost of snapshot()/restore() for a small state: sync round trip of the same
 *   class with and without a restart policy (only a supervised proxy asks for snapshots);
 * - isolated agents (`isolate: true` server, in process): kill -9 of the agent's process → the
 *   first successful call; creating one (a child's start-up); the sync round trip over gRPC
 *   with and without isolation (one more IPC hop, and the snapshot).
 * Prints a table and writes bench/results-supervision.json.
 *
 *   bun bench/supervision.ts [--quick]
 */
import { RpcAgentServerLauncher, ServerGroup } from "../src/index.ts";
import { fmt, quick, stats } from "./lib.ts";
import { Tally } from "../test/fixtures/supervised-agents.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { SupervisedConnection } from "../src/client/supervisor.ts";

const rounds = quick ? 3 : 10;
const calls = quick ? 2000 : 20_000;

function supervisor(p: unknown) {
  const conn = remoteState(p)!.conn;
  if (!(conn instanceof SupervisedConnection)) throw new Error("not a supervised proxy");
  return conn.supervisor;
}

/** ms from kill -9 of `pid` to the first call that answers. */
async function downtime(p: { add(n: number): PromiseLike<number> }, pid: number): Promise<number> {
  const t0 = performance.now();
  process.kill(pid, "SIGKILL");
  for (;;) {
    try {
      await p.add(0);
      return performance.now() - t0;
    } catch {
      // In flight at the crash, or made before the death was seen: the next one waits for the restart.
    }
  }
}

async function syncRt(p: { add(n: number): PromiseLike<number> }): Promise<number> {
  for (let i = 0; i < 200; i++) await p.add(0);
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await p.add(1);
  return ((performance.now() - t0) / calls) * 1000;
}

const rows: Array<{ row: string; median: string; values: number[]; unit: string }> = [];

// Child mode.
{
  const t = new Tally(1).toDist({ restart: { maxRestarts: rounds + 1, withinMs: 600_000, backoffMs: 0 } });
  const ms: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const pid = (await t.pid()) as number;
    const next = supervisor(t).nextRestart();
    ms.push(await downtime(t, pid));
    await next.catch(() => {});
  }
  rows.push({ row: "child: kill -9 → first successful call (state restored)", median: `${fmt(stats(ms).median)} ms`, values: ms, unit: "ms" });
  await t.stop();
}

// Group mode: two subprocess servers.
{
  const ls = [0, 1].map(() => new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Tally], shutdownGraceMs: 200 }));
  await Promise.all(ls.map((l) => l.launch({ inSubprocess: true })));
  const ms: number[] = [];
  try {
    for (let r = 0; r < Math.min(rounds, 1); r++) {
      const group = new ServerGroup(ls.map((l) => ({ host: l.host, port: l.port })), { restart: { maxRestarts: 1, backoffMs: 0 } });
      const t = Tally.toDist(group, 1);
      await t.add(1);
      const pid = (await t.pid()) as number;
      ms.push(await downtime(t, pid));
    }
  } finally {
    await Promise.all(ls.map((l) => l.shutdown()));
  }
  rows.push({ row: "group of 2: kill -9 of the holder → first successful call", median: `${fmt(stats(ms).median)} ms`, values: ms, unit: "ms" });
}

// Snapshot cost.
{
  const plain = new Tally(0).toDist();
  const sup = new Tally(0).toDist({ restart: { maxRestarts: 1 } });
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    a.push(await syncRt(plain));
    b.push(await syncRt(sup));
  }
  const ma = stats(a).median;
  const mb = stats(b).median;
  rows.push({ row: "child sync round trip, no restart policy", median: `${fmt(ma)} µs`, values: a, unit: "µs" });
  rows.push({ row: "child sync round trip, restart policy + snapshot per call", median: `${fmt(mb)} µs (${(mb / ma).toFixed(2)}×)`, values: b, unit: "µs" });
  await plain.stop();
  await sup.stop();
}

// Isolated agents: an independent server with isolate: true, against one without.
{
  const iso = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Tally], isolate: true, restart: { maxRestarts: rounds + 1, withinMs: 600_000, backoffMs: 0 } });
  const bare = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Tally] });
  await Promise.all([iso.launch(), bare.launch()]);
  try {
    const create: number[] = [];
    const agents = [];
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      const t = Tally.toDist({ host: iso.host, port: iso.port }, 1);
      await t.add(0);
      create.push(performance.now() - t0);
      agents.push(t);
    }
    const t = agents[0]!;
    const ms: number[] = [];
    for (let r = 0; r < rounds; r++) ms.push(await downtime(t, (await t.pid()) as number));
    rows.push({ row: "isolated agent: kill -9 → first successful call", median: `${fmt(stats(ms).median)} ms`, values: ms, unit: "ms" });
    rows.push({ row: "isolated agent: create (its child's start-up) → first answer", median: `${fmt(stats(create).median)} ms`, values: create, unit: "ms" });
    const plain = Tally.toDist({ host: bare.host, port: bare.port }, 0);
    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < rounds; r++) {
      a.push(await syncRt(plain));
      b.push(await syncRt(t));
    }
    const ma = stats(a).median;
    const mb = stats(b).median;
    rows.push({ row: "gRPC sync round trip, agent in the server", median: `${fmt(ma)} µs`, values: a, unit: "µs" });
    rows.push({ row: "gRPC sync round trip, isolated agent", median: `${fmt(mb)} µs (${(mb / ma).toFixed(2)}×)`, values: b, unit: "µs" });
  } finally {
    await Promise.all([iso.shutdown(), bare.shutdown()]);
  }
}

console.log(`\nsupervision (${quick ? "quick" : "full"} run)`);
for (const r of rows) console.log(`${r.row.padEnd(62)} ${r.median}`);
await Bun.write(new URL("./results-supervision.json", import.meta.url), JSON.stringify({ mode: quick ? "quick" : "full", rows }, null, 2));
process.exit(0);
