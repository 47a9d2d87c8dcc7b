/**
 * The warm pool (issue 20): spare child servers started ahead, taken by `toDist()`, refilled in
 * the background, never leaked (parent exit, kill -9 of the parent, `warm: 0`), never keeping
 * a parent alive. Real processes; every wait polls a condition against a deadline.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { configureChildren, type Remote } from "../src/index.ts";
import { warmPool } from "../src/client/warm-pool.ts";
import { liveChildren } from "../src/client/child-server.ts";
import { Counter } from "./fixtures/child-agents.ts";
import { startEnv } from "./helpers/children.ts";
import { Present, make } from "./fixtures/mistakes/local-class.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { AgentCreationError } from "../src/core/errors.ts";

const started: Array<Remote<unknown>> = [];
const seen = new Set<number>();

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await configureChildren({ warm: 0 });
  expect(liveChildren()).toBe(0);
  for (const pid of seen) await until(() => !isAlive(pid), `pid ${pid} to end`);
});

/** Running, not exited: a zombie (exited, not yet reaped) counts as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/State:\s+Z/.test(require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** Poll `cond` until it holds; fail after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** The error `p` rejects with. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

const FIXTURE = new URL("./fixtures/warm-parent.ts", import.meta.url).pathname;

/** Start a parent with `warm: 2`; resolves with it and its spares' pids. */
async function parent(mode: "exit" | "hang" | "idle") {
  const proc = Bun.spawn([process.execPath, FIXTURE, mode], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const pids = JSON.parse(text.split("\n")[0]!) as number[];
  for (const p of pids) seen.add(p);
  return { proc, pids };
}

describe("warm pool", () => {
  test("toDist() takes a spare that was started before, and the pool refills", async () => {
    await configureChildren({ warm: 1 });
    const spares = warmPool.pids();
    expect(spares.length).toBe(1);
    spares.forEach((p) => seen.add(p));
    const c = new Counter(3).toDist();
    started.push(c as Remote<unknown>);
    expect(await c.inc(1)).toBe(4);
    expect(await c.pid()).toBe(spares[0]!);
    // The child it became has its config off the environment, like a freshly spawned one.
    expect(await c.envVar("AS_CHILD_CONFIG")).toBeUndefined();
    // Refilled in the background: a new spare, not the taken one.
    await until(() => warmPool.pids().length === 1 && warmPool.pids()[0] !== spares[0], "the pool to refill");
    const next = warmPool.pids()[0]!;
    seen.add(next);
    expect(isAlive(next)).toBe(true);
    // …which the next toDist() takes, its class module already imported by then.
    await configureChildren({ warm: 1 });
    await until(() => warmPool.ready() === 1, "a loaded spare that imported the class module");
    const before = warmPool.pids();
    before.forEach((p) => seen.add(p));
    const d = new Counter(10).toDist();
    started.push(d as Remote<unknown>);
    expect(await d.inc(5)).toBe(15);
    expect(before).toContain(await d.pid());
  });

  test("a spare gets its first create with its config; requests right behind it are answered in order", async () => {
    await configureChildren({ warm: 1 });
    await until(() => warmPool.ready() === 1, "a loaded spare that imported the class module");
    const spares = warmPool.pids();
    spares.forEach((p) => seen.add(p));
    const c = new Counter(100).toDist();
    started.push(c as Remote<unknown>);
    // Sent before the spare says it serves: held by it, then run in order.
    const all = await Promise.all([c.inc(1), c.inc(1), c.inc(1), c.pid()]);
    expect(all).toEqual([101, 102, 103, spares[0]!]);
  });

  test("the start-up settings a parent adds for its children are not in their environment", async () => {
    await configureChildren({ warm: 1 });
    await until(() => warmPool.ready() === 1, "a loaded spare that imported the class module");
    const spares = warmPool.pids();
    spares.forEach((p) => seen.add(p));
    const c = new Counter().toDist();
    started.push(c as Remote<unknown>);
    expect(spares).toContain(await c.pid());
    expect(await c.envVar("BUN_FEATURE_FLAG_DISABLE_ASYNC_TRANSPILER")).toBeUndefined();
    expect(await c.envVar("MIMALLOC_PURGE_DELAY")).toBeUndefined();
    expect(await c.envVar("AS_START_ENV_ADDED")).toBeUndefined();
    // …yet it started with them (a process's initial environment).
    expect(startEnv(await c.pid())).toContain("MIMALLOC_PURGE_DELAY=-1");
    await configureChildren({ warm: 0 });
    const cold = new Counter().toDist();
    started.push(cold as Remote<unknown>);
    seen.add(await cold.pid());
    expect(await cold.envVar("BUN_FEATURE_FLAG_DISABLE_ASYNC_TRANSPILER")).toBeUndefined();
    expect(await cold.envVar("MIMALLOC_PURGE_DELAY")).toBeUndefined();
    expect(await cold.envVar("AS_START_ENV_ADDED")).toBeUndefined();
    expect(startEnv(await cold.pid())).toContain("BUN_FEATURE_FLAG_DISABLE_ASYNC_TRANSPILER=1");
    expect(startEnv(await cold.pid())).toContain("MIMALLOC_PURGE_DELAY=-1");
  });

  test("a spare taken for a class its module does not define at the top level fails the start with NOT_FOUND, and ends", async () => {
    const Local = make();
    // A child of the module's top-level class teaches the pool the module; spares import it while waiting.
    const first = new Present().toDist();
    started.push(first as Remote<unknown>);
    expect(await first.hi()).toBe("present");
    await configureChildren({ warm: 1 });
    await until(() => warmPool.ready() === 1, "a loaded spare that imported the module");
    const spares = warmPool.pids();
    spares.forEach((p) => seen.add(p));
    const p = new Local().toDist();
    const err = await rejection(remoteState(p)!.ready);
    expect(err).toBeInstanceOf(AgentCreationError);
    expect((err as AgentCreationError).code).toBe("NOT_FOUND");
    expect(err.message).toContain("class Local is not defined at the top level of");
    for (const pid of spares) await until(() => !isAlive(pid), `spare ${pid} to end`);
    await configureChildren({ warm: 0 });
  });

  test("a child that needs another environment than the spares' is spawned afresh", async () => {
    await configureChildren({ warm: 1 });
    const spares = warmPool.pids();
    spares.forEach((p) => seen.add(p));
    process.env.AS_WARM_TEST = "changed";
    try {
      const c = new Counter().toDist();
      started.push(c as Remote<unknown>);
      expect(await c.envVar("AS_WARM_TEST")).toBe("changed");
      const pid = await c.pid();
      seen.add(pid);
      expect(spares).not.toContain(pid);
    } finally {
      delete process.env.AS_WARM_TEST;
    }
    // The stale spare was replaced.
    for (const p of spares) await until(() => !isAlive(p), `stale spare ${p} to end`);
  });

  test("warm: 0 kills the spares", async () => {
    await configureChildren({ warm: 2 });
    const spares = warmPool.pids();
    expect(spares.length).toBe(2);
    spares.forEach((p) => seen.add(p));
    await configureChildren({ warm: 0 });
    expect(warmPool.pids()).toEqual([]);
    for (const p of spares) await until(() => !isAlive(p), `spare ${p} to end`);
  });

  test("a parent that exits normally leaves no spare behind", async () => {
    const { proc, pids } = await parent("exit");
    expect(pids.length).toBe(2);
    expect(await proc.exited).toBe(0);
    for (const p of pids) await until(() => !isAlive(p), `spare ${p} to end`);
  });

  test("a parent killed with SIGKILL leaves no spare behind (they notice the IPC link closing)", async () => {
    const { proc, pids } = await parent("hang");
    expect(pids.length).toBe(2);
    for (const p of pids) expect(isAlive(p)).toBe(true);
    proc.kill("SIGKILL");
    await proc.exited;
    for (const p of pids) await until(() => !isAlive(p), `spare ${p} to end`);
  });

  test("a parent with nothing but a warm pool exits on its own", async () => {
    const { proc, pids } = await parent("idle");
    const code = await Promise.race([proc.exited, Bun.sleep(15_000).then(() => "still running")]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(0);
    for (const p of pids) await until(() => !isAlive(p), `spare ${p} to end`);
  });
});
