/** Supervision: crashed objects restart with their state (child mode, groups); isolated agents. */
import { afterAll, describe, expect, test } from "bun:test";
import { AgentServerNotAliveError, RpcAgentServerLauncher, RpcClient, ServerGroup } from "../src/index.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { restartInfo, SupervisedConnection, type Supervisor } from "../src/client/supervisor.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childTracker } from "./helpers/children.ts";
import { SOURCE_CLI, startServer } from "./helpers/cli.ts";
import { Plain, Tally } from "./fixtures/supervised-agents.ts";

const { child, stopAll } = childTracker();
afterAll(stopAll);

function supervisorOf(p: unknown): Supervisor {
  const conn = remoteState(p)!.conn;
  if (!(conn instanceof SupervisedConnection)) throw new Error("not a supervised proxy");
  return conn.supervisor;
}

/** kill -9 the process and wait until the supervisor has a new incarnation (or gave up). */
async function killAndWait(p: unknown, pid: number): Promise<unknown> {
  const next = supervisorOf(p).nextRestart();
  process.kill(pid, "SIGKILL");
  return next.catch((e) => e);
}

describe("child mode restarts", () => {
  test("kill -9 of a child - the next call runs on a new pid, same oid, with the state of the last snapshot", async () => {
    const t = child(new Tally(5).toDist({ restart: { maxRestarts: 3, backoffMs: 0 } }));
    expect(await t.add(2)).toBe(7);
    expect(await t.addLater(3)).toBe(10);
    const pid = await t.pid();
    const oid = t.oid;
    await killAndWait(t, pid);
    const pid2 = await t.pid();
    expect(pid2).not.toBe(pid);
    expect(t.oid).toBe(oid);
    expect(await t.restored).toBe(true);
    expect(await t.add(1)).toBe(11);
    const info = restartInfo(t)!;
    expect(info.restarts).toBe(1);
    expect(info.pid).toBe(pid2);
    expect(info.lastRestartReason).toContain("SIGKILL");
    expect(t.host).toBe(info.where!);
  });

  test("kill -9 of a child whose class has no snapshot - the object is rebuilt from its constructor arguments", async () => {
    const p = child(new Plain(100).toDist({ restart: { maxRestarts: 1, backoffMs: 0 } }));
    expect(await p.add(5)).toBe(105);
    await killAndWait(p, await p.pid());
    expect(await p.add(1)).toBe(101);
  });

  test("a sync call in flight at the crash fails UNAVAILABLE and is not re-run; later calls succeed", async () => {
    const t = child(new Tally().toDist({ restart: { maxRestarts: 1, backoffMs: 0 } }));
    const pid = await t.pid();
    const hanging = t.hang();
    await t.add(0); // the hang call is at the server now
    const restarted = killAndWait(t, pid);
    const e: any = await hanging.catch((x) => x);
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.code).toBe("UNAVAILABLE");
    await restarted;
    expect(await t.add(1)).toBe(1);
  });

  test("past maxRestarts within withinMs - calls fail UNAVAILABLE saying the restart budget is spent", async () => {
    const t = child(new Tally().toDist({ restart: { maxRestarts: 1, withinMs: 60_000, backoffMs: 0 } }));
    await killAndWait(t, await t.pid());
    const dead = await killAndWait(t, await t.pid());
    expect(dead).toBeInstanceOf(AgentServerNotAliveError);
    const e: any = await t.add(1).catch((x) => x);
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toContain("restart budget is spent");
    expect(restartInfo(t)!.dead).toContain("restart budget is spent");
  });

  test("an agent's own process.exit is a crash like any other: the object restarts", async () => {
    const t = child(new Tally(1).toDist({ restart: { maxRestarts: 1, backoffMs: 0 } }));
    await t.add(1);
    const next = supervisorOf(t).nextRestart();
    const e: any = await t.exit(3).catch((x) => x);
    expect(e.code).toBe("UNAVAILABLE");
    await next;
    expect(restartInfo(t)!.lastRestartReason).toContain("code 3");
    expect(await t.add(0)).toBe(2);
  });

  test("stop() is not a crash: no restart, later calls fail UNAVAILABLE", async () => {
    const t = new Tally().toDist({ restart: { maxRestarts: 5 } });
    await t.add(1);
    await t.stop();
    const e: any = await t.add(1).catch((x) => x);
    expect(e.code).toBe("UNAVAILABLE");
    expect(restartInfo(t)!.restarts).toBe(0);
  });
});

describe("group restarts", () => {
  test("a group of two subprocess servers - kill -9 of the one holding the object, and it answers from the other with its state", async () => {
    const servers = [0, 1].map(() => new RpcAgentServerLauncher({ host: "127.0.0.1", port: 0, customAgentClasses: [Tally], shutdownGraceMs: 200 }));
    try {
      await Promise.all(servers.map((l) => l.launch({ inSubprocess: true })));
      await using group = new ServerGroup(servers.map((l) => ({ host: l.host, port: l.port })), { restart: { maxRestarts: 2, backoffMs: 0 } });
      const t = Tally.toDist(group, 10);
      expect(await t.add(5)).toBe(15);
      const pid = await t.pid();
      const before = `${t.host}:${t.port}`;
      const next = supervisorOf(t).nextRestart();
      process.kill(pid, "SIGKILL");
      // The first call after the kill finds the server gone; it was in flight, so it fails UNAVAILABLE.
      const e: any = await t.add(1).catch((x) => x);
      if (e instanceof Error) expect((e as any).code).toBe("UNAVAILABLE");
      await next;
      const pid2 = await t.pid();
      expect(pid2).not.toBe(pid);
      expect(`${t.host}:${t.port}`).not.toBe(before);
      expect(await t.add(0)).toBe(e instanceof Error ? 15 : 16);
      expect(await t.restored).toBe(true);
      expect(restartInfo(t)!.restarts).toBe(1);
      const list = await new RpcClient(t.host, t.port!).getAgentList();
      expect(list.map((a) => a.id)).toContain(t.oid);
    } finally {
      await Promise.all(servers.map((l) => l.shutdown()));
    }
  }, 20_000);
});

describe("an agent that ends its independent server", () => {
  test("its process.exit is logged with the agent's class, oid and method (as-server start)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "as-exit-"));
    writeFileSync(join(dir, "agents.ts"), `export { Tally } from ${JSON.stringify(new URL("./fixtures/supervised-agents.ts", import.meta.url).pathname)};\n`);
    await using srv = await startServer(SOURCE_CLI, ["--port", "0", "--agent-dir", dir]);
    const t = Tally.toDist({ host: srv.host, port: srv.port });
    expect(await t.add(1)).toBe(1);
    const e = (await t.exit(7).catch((x: unknown) => x)) as AgentServerNotAliveError;
    expect(e.code).toBe("UNAVAILABLE");
    expect(await srv.proc.exited).toBe(7);
    await srv.stderr.done;
    expect(srv.stderr.text).toContain(`agent Tally ${t.oid} ended the server's process (exit code 7) in exit()`);
  });
});
