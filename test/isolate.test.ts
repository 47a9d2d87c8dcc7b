/** Isolation (`--isolate`, `isolate: true`): one agent's crash ends its own process only, and it is restarted. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentServerNotAliveError, RpcAgentServerLauncher, RpcClient, type AgentInfo } from "../src/index.ts";
import { SOURCE_CLI, runCli, startServer } from "./helpers/cli.ts";
import { Plain, Tally } from "./fixtures/supervised-agents.ts";
import { Streamer } from "./fixtures/stream-agents.ts";

/** Poll `read` until `ok` holds of its value, at most `ms`; the last value, or an error naming what was awaited. */
async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = performance.now() + ms;
  let last: T | undefined;
  for (;;) {
    last = await read();
    if (ok(last)) return last;
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
    await Bun.sleep(20);
  }
}

/** The agent list entry of `oid` once it shows `n` restarts (or more). */
function restarted(c: RpcClient, oid: string, n: number): Promise<AgentInfo> {
  return until(`${oid} to have restarted ${n} time(s)`, async () => (await c.getAgentList()).find((a) => a.id === oid)!, (a) => (a?.restarts ?? 0) >= n);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("an isolate: true launcher (in process)", () => {
  let server: RpcAgentServerLauncher;
  let client: RpcClient;
  let at: { host: string; port: number };
  const childPids = new Set<number>();

  beforeAll(async () => {
    server = new RpcAgentServerLauncher({ host: "127.0.0.1", port: 0, customAgentClasses: [Tally, Plain, Streamer], isolate: true, restart: { maxRestarts: 2, backoffMs: 0 }, metricsPort: 0 });
    await server.launch();
    at = { host: server.host, port: server.port };
    client = new RpcClient(server.host, server.port);
  });

  afterAll(async () => {
    await server.shutdown();
    // Shutting the server down ends every agent's process with it.
    await until("the isolated agents' processes to end", async () => [...childPids].filter(alive), (l) => l.length === 0);
  });

  test("each agent runs in a process of its own, neither the server's nor another agent's", async () => {
    const t = Tally.toDist(at, 1);
    const p = Plain.toDist(at, 1);
    const [tp, pp] = [await t.pid(), await p.pid()];
    childPids.add(tp).add(pp);
    expect(new Set([tp, pp, process.pid]).size).toBe(3);
  });

  test("an agent's process.exit fails that call UNAVAILABLE; another agent of the server still answers; the crashed one answers again, same oid, state from its snapshot", async () => {
    const t = Tally.toDist(at, 5);
    const p = Plain.toDist(at, 100);
    expect(await t.add(2)).toBe(7);
    expect(await t.addLater(3)).toBe(10); // an async call's result carries the snapshot too
    expect(await p.add(1)).toBe(101);
    const pid = await t.pid();
    childPids.add(pid).add(await p.pid());
    const e = (await t.exit(3).catch((x: unknown) => x)) as AgentServerNotAliveError;
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.code).toBe("UNAVAILABLE");
    expect(await p.add(1)).toBe(102);
    const info = await restarted(client, t.oid, 1);
    expect(info.lastRestartReason).toContain("code 3");
    expect(await t.add(0)).toBe(10);
    expect(await t.restored).toBe(true);
    const pid2 = await t.pid();
    childPids.add(pid2);
    expect(pid2).not.toBe(pid);
    expect(alive(pid)).toBe(false);
  });

  test("kill -9 of an agent whose class has no snapshot: it is rebuilt from its constructor arguments", async () => {
    const p = Plain.toDist(at, 40);
    expect(await p.add(2)).toBe(42);
    const pid = await p.pid();
    childPids.add(pid);
    process.kill(pid, "SIGKILL");
    const info = await restarted(client, p.oid, 1);
    expect(info.lastRestartReason).toContain("SIGKILL");
    expect(await p.add(0)).toBe(40);
  });

  test("an exception nothing catches ends only that agent's process, and it restarts", async () => {
    const p = Plain.toDist(at, 3);
    const other = Plain.toDist(at, 4);
    const pid = await p.pid();
    childPids.add(pid).add(await other.pid());
    await p.throwLater();
    const info = await restarted(client, p.oid, 1);
    expect(info.lastRestartReason).toContain("exited (code 1)");
    expect(alive(pid)).toBe(false);
    expect(await other.add(0)).toBe(4);
    expect(await p.add(0)).toBe(3);
  });

  test("a sync call and an async task in flight at the crash fail UNAVAILABLE, and are not re-run", async () => {
    const t = Tally.toDist(at, 0);
    const hanging = t.hang().catch((x: unknown) => x);
    const task = t.hangLater();
    const result = task.catch((x: unknown) => x);
    await until("both calls to be running in the agent", () => t.hanging(), (n) => n === 2);
    const pid = await t.pid();
    childPids.add(pid);
    process.kill(pid, "SIGKILL");
    for (const e of [(await hanging) as AgentServerNotAliveError, (await result) as AgentServerNotAliveError]) {
      expect(e).toBeInstanceOf(AgentServerNotAliveError);
      expect(e.code).toBe("UNAVAILABLE");
    }
    await restarted(client, t.oid, 1);
    expect(await t.hanging()).toBe(0);
  });

  test("a future of an isolated agent passed to another isolated agent is awaited there (pipelining)", async () => {
    const t = Tally.toDist(at, 10);
    const p = Plain.toDist(at, 1);
    childPids.add(await t.pid()).add(await p.pid());
    expect(await p.addFrom(t.addLater(5) as unknown as PromiseLike<number>)).toBe(16);
  });

  test("a stream method of an isolated agent streams its items; break ends the generator in the agent's process", async () => {
    const s = Streamer.toDist(at);
    const items: number[] = [];
    for await (const i of s.count(50)) items.push(i);
    expect(items).toEqual([...Array(50).keys()]);
    for await (const i of s.endless()) if (i === 3) break;
    expect(await until("the generator's finally to run", async () => await s.finallyRan, (n) => n === 1)).toBe(1);
  });

  test("past its restart budget the agent stays dead: calls fail UNAVAILABLE naming the budget; the list says why", async () => {
    const t = Tally.toDist(at, 0);
    for (let i = 1; i <= 2; i++) {
      childPids.add(await t.pid());
      await t.exit(1).catch(() => {});
      await restarted(client, t.oid, i);
    }
    childPids.add(await t.pid());
    await t.exit(1).catch(() => {});
    const e = (await until("the agent to be dead for good", () => t.add(1).catch((x: unknown) => x), (x) => x instanceof Error && /budget/.test(x.message))) as AgentServerNotAliveError;
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toContain("restart budget is spent (2 restarts within 60000 ms)");
    const info = (await client.getAgentList()).find((a) => a.id === t.oid)!;
    expect(info.restarts).toBe(2);
    expect(info.dead).toContain("restart budget is spent");
  });

  test("deleting an isolated agent ends its process; the server holds one agent fewer", async () => {
    const p = Plain.toDist(at, 0);
    const pid = await p.pid();
    const before = (await client.getServerInfo()).size;
    await p.delete();
    expect((await client.getServerInfo()).size).toBe(before - 1);
    await until("the deleted agent's process to end", async () => alive(pid), (a) => !a);
  });

    test("getServerInfo counts the restarts, and /metrics has actorscope_restarts_total by class", async () => {
    const list = await client.getAgentList();
    const sum = (cls: string) => list.filter((a) => a.cls === cls).reduce((n, a) => n + (a.restarts ?? 0), 0);
    expect(sum("Tally")).toBeGreaterThan(0);
    expect((await client.getServerInfo()).restarts).toBe(sum("Tally") + sum("Plain"));
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    expect(text).toContain(`actorscope_restarts_total{class="Tally"} ${sum("Tally")}`);
    expect(text).toContain(`actorscope_restarts_total{class="Plain"} ${sum("Plain")}`);
  });
});

describe("isolate options", () => {
  test("restart without isolate, or a malformed restart, is refused at construction, naming the option", () => {
    expect(() => new RpcAgentServerLauncher({ port: 0, restart: { maxRestarts: 1 } })).toThrow("it needs isolate: true");
    expect(() => new RpcAgentServerLauncher({ port: 0, isolate: true, restart: { maxRestarts: -1 } })).toThrow("restart.maxRestarts");
  });
});

describe("an isolate server that requires a token", () => {
  test("its agents dial it back with its token: a future passed from one isolated agent to another resolves", async () => {
    await using server = new RpcAgentServerLauncher({ host: "127.0.0.1", port: 0, token: "isolate-secret", customAgentClasses: [Tally, Plain], isolate: true });
    await server.launch();
    const at = { host: server.host, port: server.port, token: "isolate-secret" };
    const t = Tally.toDist(at, 1);
    const p = Plain.toDist(at, 2);
    expect(await p.addFrom(t.addLater(3) as unknown as PromiseLike<number>)).toBe(6);
  });
});

describe("as-server start --isolate", () => {
  test("an agent's process.exit leaves the server and its other agents running; the agent restarts with its state; crash and restart are logged with class and oid", async () => {
    const dir = mkdtempSync(join(tmpdir(), "as-isolate-"));
    writeFileSync(join(dir, "agents.ts"), `export { Tally, Plain } from ${JSON.stringify(new URL("./fixtures/supervised-agents.ts", import.meta.url).pathname)};\n`);
    await using srv = await startServer(SOURCE_CLI, ["--port", "0", "--agent-dir", dir, "--isolate", "--max-restarts", "1", "--log-format", "json"]);
    const at = { host: srv.host, port: srv.port };
    const client = new RpcClient(srv.host, srv.port);
    const t = Tally.toDist(at, 1);
    const p = Plain.toDist(at, 7);
    expect(await t.add(1)).toBe(2);
    expect(await p.add(0)).toBe(7);
    const e = (await t.exit(7).catch((x: unknown) => x)) as AgentServerNotAliveError;
    expect(e.code).toBe("UNAVAILABLE");
    expect(await p.add(1)).toBe(8);
    expect(srv.proc.exitCode).toBeNull();
    expect((await restarted(client, t.oid, 1)).lastRestartReason).toContain("code 7");
    expect(await t.add(0)).toBe(2);
    const logged = () => srv.stdout.text + srv.stderr.text;
    await until("the restart to be logged", async () => logged(), (s) => s.includes('"agent.restarted"'));
    const lines = logged().split("\n").filter((l) => l.includes(t.oid)).map((l) => l.trim());
    expect(lines.some((l) => l.includes('"agent.crashed"') && l.includes('"cls":"Tally"') && l.includes("code 7"))).toBe(true);
    expect(lines.some((l) => l.includes('"agent.restarted"') && l.includes('"restarts":1'))).toBe(true);
    // The budget (1) is spent by the next crash: the agent stays dead, the server and its other agent do not.
    await t.exit(7).catch(() => {});
    const dead = (await until("the agent to be dead for good", () => t.add(1).catch((x: unknown) => x), (x) => x instanceof Error && /budget/.test(x.message))) as Error;
    expect((dead as AgentServerNotAliveError).code).toBe("UNAVAILABLE");
    expect(await p.add(1)).toBe(9);
    expect(await srv.stop()).toBe(0);
  });

  test("--max-restarts without --isolate is a usage error (exit 2)", async () => {
    const r = await runCli(SOURCE_CLI, ["start", "--port", "0", "--max-restarts", "2"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("need --isolate");
  });
});
