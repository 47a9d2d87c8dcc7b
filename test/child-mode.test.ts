import { afterAll, describe, expect, test } from "bun:test";
import {
  AgentCallError,
  AgentCreationError,
  AgentServerNotAliveError,
  AsyncResult,
  CodecError,
  DeadlineExceededError,
  Msg,
  RetryFixedTimes,
  NotFoundError,
  type Remote,
} from "../src/index.ts";
import { liveChildren } from "../src/client/child-server.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { randomId } from "../src/core/ids.ts";
import { currentModelConfigs, setModelConfigList } from "../src/models/store.ts";
import { WillNotLoad } from "./fixtures/broken-at-import.ts";
import { built, Counter, Greeter, Plain } from "./fixtures/child-agents.ts";

const started: Array<Remote<unknown>> = [];
function track<T>(p: Remote<T>): Remote<T> {
  started.push(p as Remote<unknown>);
  return p;
}
const pids: number[] = [];

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  expect(liveChildren()).toBe(0);
  for (const pid of pids) expect(isAlive(pid)).toBe(false);
});

/** Running, not exited: a zombie (exited, not yet reaped by pid 1) counts as gone. */
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

describe("child mode", () => {
  test("a sync call returns the method's value; an attribute read returns the field", async () => {
    const c = track(new Counter(5, "five").toDist());
    expect(await c.inc(2)).toBe(7);
    expect(await c.n).toBe(7);
    expect(await c.label).toBe("five");
    expect(await c.doubled).toBe(14);
    expect(await c.explicitSync()).toBe("sync");
  });

  test("the remote copy keeps the local object's oid", async () => {
    const local = new Counter(1);
    const c = track(local.toDist());
    expect(c.oid).toBe(local.oid);
    expect(c.port).toBeUndefined();
    expect(c.host).toStartWith("child:");
  });

  test("the object lives in another process", async () => {
    const c = track(new Counter().toDist());
    const pid = await c.pid();
    pids.push(pid);
    expect(pid).not.toBe(process.pid);
  });

  test("the child's config (which may hold API keys) is passed off the command line and removed from its environment", async () => {
    const c = track(new Counter().toDist());
    const pid = await c.pid();
    pids.push(pid);
    const cmdline = await Bun.file(`/proc/${pid}/cmdline`).text();
    expect(cmdline).not.toContain("maxPoolSize");
    expect(await c.envVar("AS_CHILD_CONFIG")).toBeUndefined();
  });

  test("a parent whose config is too large for one environment string still starts children (the config goes on stdin)", async () => {
    const before = currentModelConfigs() ?? [];
    // ~200 KiB of model configs: past Linux's 128 KiB limit for one environment string.
    const many = Array.from({ length: 400 }, (_, i) => ({ config_name: `big-${i}`, model_type: "post_api_chat", model_name: "m", api_url: `http://127.0.0.1:1/${"x".repeat(500)}` }));
    setModelConfigList([...before, ...many] as never);
    try {
      const c = track(new Counter(3).toDist());
      expect(await c.inc(1)).toBe(4);
      expect(await c.envVar("AS_CHILD_CONFIG")).toBeUndefined();
    } finally {
      setModelConfigList(before);
    }
  });

  test("X.toDist creates remotely and never constructs locally", async () => {
    const before = built.counter;
    const c = track(Counter.toDist(true, 40, "remote"));
    expect(await c.inc(2)).toBe(42);
    expect(built.counter).toBe(before);
  });

  test("toDist on a proxy returns the same proxy", () => {
    const c = track(new Counter().toDist());
    expect((c as unknown as Counter).toDist()).toBe(c as unknown as Remote<Counter>);
  });

  test("an async call returns at once and can be awaited twice", async () => {
    const c = track(new Counter(3).toDist());
    await c.inc(0);
    const t0 = performance.now();
    const r = c.sleepy(300);
    expect(performance.now() - t0).toBeLessThan(50);
    expect(r).toBeInstanceOf(AsyncResult);
    expect(await r).toBe(3);
    expect(await r).toBe(3);
    expect(await r.result()).toBe(3);
  });

  test("result(timeoutMs) gives DEADLINE_EXCEEDED without caching it; a later read still gets the value", async () => {
    const c = track(new Counter(9).toDist());
    const r = c.sleepy(400);
    const e = await r.result(50).catch((x: any) => x);
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect(await r).toBe(9);
  });

  test("the retry strategy bounds how long a result is waited for", async () => {
    const c = track(new Counter().toDist({ maxTimeoutSeconds: 0.1, retryStrategy: new RetryFixedTimes({ maxRetries: 2 }) }));
    await c.inc(0);
    const t0 = performance.now();
    const e = await c.sleepy(5000).catch((x: any) => x);
    const took = performance.now() - t0;
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect(e.message).toContain("not ready after 3 waits");
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
  });

  test("a composite async result resolves to the whole object", async () => {
    const c = track(new Counter().toDist());
    const r = c.composite();
    const v = await r;
    expect(v).toEqual({ a: 1, b: 2, c: "hello world" });
    expect((await r).c).toBe("hello world");
  });

  test("two 1 s async calls on one child overlap", async () => {
    const c = track(new Counter().toDist());
    await c.inc(0);
    const t0 = performance.now();
    const [a, b] = await Promise.all([c.sleepy(1000), c.sleepy(1000)]);
    const took = performance.now() - t0;
    expect([a, b]).toEqual([0, 0]);
    expect(took).toBeLessThan(1500);
  });

  test("_-prefixed members are unreachable", async () => {
    const c = track(new Counter().toDist());
    expect((c as unknown as Record<string, unknown>)._secret).toBeUndefined();
    const st = remoteState(c)!;
    await st.ready;
    const res = await st.conn.send({ t: "call", oid: c.oid, name: "_secret", args: new Uint8Array([2, 0, 0, 0, 91, 93]) });
    expect(res.t).toBe("error");
    expect(res.t === "error" && res.error.code).toBe("UNIMPLEMENTED");
  });

  test("a remote exception in a sync call arrives typed, with remote name, message, stack and cause", async () => {
    const c = track(new Counter().toDist());
    const r = c.fail("bad input");
    for (let i = 0; i < 2; i++) {
      const e = await r.then(() => undefined, (x: any) => x);
      expect(e).toBeInstanceOf(AgentCallError);
      expect(e.code).toBe("UNKNOWN");
      expect(e.remote.name).toBe("TypeError");
      expect(e.remote.message).toBe("bad input");
      expect(e.remote.stack).toContain("child-agents.ts");
      expect(e.cause).toBeInstanceOf(Error);
      expect(e.cause.name).toBe("TypeError");
    }
  });

  test("a remote exception in an async call rejects every read of the result", async () => {
    const c = track(new Counter().toDist());
    const r = c.failLater("async boom");
    const e1 = await r.result().catch((x: any) => x);
    const e2 = await r.catch((x: any) => x);
    for (const e of [e1, e2]) {
      expect(e).toBeInstanceOf(AgentCallError);
      expect(e.remote.name).toBe("RangeError");
      expect(e.message).toContain("async boom");
    }
  });

  test("Msg crosses the wire with its id, and an agent's async reply resolves", async () => {
    const g = track(new Greeter("g").toDist());
    const m = new Msg({ name: "user", role: "user", content: "there", metadata: { value: 1 } });
    const y = await g.reply(m);
    expect(y).toBeInstanceOf(Msg);
    expect(y.content).toBe("hi there");
    expect(y.metadata).toEqual({ value: 1 });
    expect(await g.name).toBe("g");
    const echoed = await (track(new Counter().toDist()).echo(m) as AsyncResult<Msg>);
    expect(echoed.id).toBe(m.id);
  });

  test("a crashing child fails its pending calls at once with UNAVAILABLE", async () => {
    const c = track(new Counter().toDist());
    const pid = await c.pid();
    pids.push(pid);
    const pending = c.hang();
    await c.inc(0);
    const t0 = performance.now();
    c.crash();
    const e = await pending.result().catch((x: any) => x);
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.code).toBe("UNAVAILABLE");
    expect(performance.now() - t0).toBeLessThan(1000);
    const later = await c.inc().catch((x: any) => x);
    expect(later).toBeInstanceOf(AgentServerNotAliveError);
  });

  test("kill -9 of a child during a sync call rejects it promptly", async () => {
    const c = track(new Counter().toDist());
    const pid = await c.pid();
    pids.push(pid);
    const call = c.sleepy(10_000);
    await c.inc(0);
    const t0 = performance.now();
    process.kill(pid, "SIGKILL");
    const e = await call.result().catch((x: any) => x);
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a child never outlives its parent: kill -9 of the parent ends the child", async () => {
    await using parent = Bun.spawn([process.execPath, import.meta.dir + "/fixtures/orphan-parent.ts"], { stdout: "pipe", stderr: "inherit" });
    const reader = parent.stdout.getReader();
    let text = "";
    while (!/child pid \d+/.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`parent exited early: ${text}`);
      text += new TextDecoder().decode(value);
    }
    const childPid = Number(text.match(/child pid (\d+)/)![1]);
    expect(isAlive(childPid)).toBe(true);
    parent.kill("SIGKILL");
    await parent.exited;
    // Process death has no event to wait on from here: poll the pid, bounded.
    const t0 = performance.now();
    while (isAlive(childPid) && performance.now() - t0 < 3000) await Bun.sleep(5);
    expect(isAlive(childPid)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  test("stop() ends the child quickly, and calls afterwards fail with UNAVAILABLE", async () => {
    const c = new Counter().toDist();
    const pid = await c.pid();
    const t0 = performance.now();
    await c.stop();
    expect(performance.now() - t0).toBeLessThan(500);
    expect(isAlive(pid)).toBe(false);
    const e = await c.inc().catch((x: any) => x);
    expect(e.code).toBe("UNAVAILABLE");
  });

  test("await using stops the child at the end of the scope", async () => {
    let pid = 0;
    {
      await using c = new Counter().toDist();
      pid = await c.pid();
      expect(isAlive(pid)).toBe(true);
    }
    expect(isAlive(pid)).toBe(false);
  });

  test("delete removes the object; later calls fail with NOT_FOUND; deleting twice is harmless", async () => {
    const c = track(new Counter().toDist());
    await c.inc();
    await c.delete();
    await c.delete();
    const e = await c.inc().catch((x: any) => x);
    expect(e).toBeInstanceOf(NotFoundError);
  });

  test("a function argument is refused with a clear codec error", async () => {
    const c = track(new Counter().toDist());
    const e: any = await c.echo((() => 1) as never).catch((x: any) => x as any);
    expect(e).toBeInstanceOf(CodecError);
    expect(e.message).toContain("functions are not values");
    expect(await c.inc()).toBe(1);
  });

  test("an unserializable return value fails the call with INTERNAL and the object stays usable", async () => {
    const c = track(new Counter().toDist());
    const e = await c.returnsFunction().catch((x: any) => x);
    expect(e.code).toBe("INTERNAL");
    expect(await c.inc()).toBe(1);
  });

  test("a class without @dist cannot be distributed", () => {
    expect(() => new Plain().toDist()).toThrow(/decorate it with @dist/);
  });

  test("a constructor argument that cannot be sent fails creation clearly", async () => {
    const c = track(Counter.toDist(true, (() => 0) as never));
    const e = await c.inc().catch((x: any) => x);
    expect(e).toBeInstanceOf(AgentCreationError);
    expect(e.message).toContain("functions are not values");
  });

  test("a child whose module fails to load rejects with its stderr tail", async () => {
    const p = track(new WillNotLoad().toDist());
    const err = await remoteState(p)!.ready.catch((x: any) => x);
    expect(err).toBeInstanceOf(AgentServerNotAliveError);
    expect(String(err.message)).toContain("refusing to load in a child server on purpose");
  });

  test("creating an object with an id that already exists is refused", async () => {
    const c = track(new Counter().toDist());
    await c.inc();
    const st = remoteState(c)!;
    const res = await st.conn.send({ t: "create", oid: c.oid, cls: "Counter", args: new Uint8Array([2, 0, 0, 0, 91, 93]) });
    expect(res.t === "error" && res.error.code).toBe("ALREADY_EXISTS");
    const other = await st.conn.send({ t: "create", oid: randomId(), cls: "Nope", args: new Uint8Array([2, 0, 0, 0, 91, 93]) });
    expect(other.t === "error" && other.error.code).toBe("NOT_FOUND");
  });
});
