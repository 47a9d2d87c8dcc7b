import { childTracker } from "./helpers/children.ts";
import { afterAll, describe, expect, test } from "bun:test";
import { AgentServerNotAliveError, Msg, NotFoundError, type Remote } from "../src/index.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { Adder, Factory, Gather, Generator, NestedReader } from "./fixtures/pipeline-agents.ts";

const { child, stopAll } = childTracker();
afterAll(stopAll);

const value = (m: Msg) => (m.metadata as { value: number }).value;
const start = () => new Msg({ name: "user", role: "user", metadata: { value: 0 } });

describe("pipelining between child servers", () => {
  test("a chain of three agents returns at once and resolves on the servers (≥ 3 s, no caller waits)", async () => {
    const [a, b, c] = ["a", "b", "c"].map((n) => child(new Adder(n).toDist()));
    await Promise.all([a!.name, b!.name, c!.name]);
    const t0 = performance.now();
    const r1 = a!.reply(start());
    const r2 = b!.reply(r1);
    const r3 = c!.reply(r2);
    expect(performance.now() - t0).toBeLessThan(500);
    const v = await r3;
    expect(value(v)).toBe(3);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(3000);
    expect(performance.now() - t0).toBeLessThan(4500);
    expect(value(await r1)).toBe(1);
  });

  test("three agents called in parallel finish in about one delay", async () => {
    const agents = ["p", "q", "r"].map((n) => child(new Adder(n).toDist()));
    await Promise.all(agents.map((x) => x.name));
    const t0 = performance.now();
    const vs = await Promise.all(agents.map((x) => x.reply(start())));
    expect(vs.map(value)).toEqual([1, 1, 1]);
    expect(performance.now() - t0).toBeLessThan(1500);
  });

  test("a result nested in a Msg's metadata travels as a reference and is awaited on the server", async () => {
    const a = child(new Adder("a", 200).toDist());
    const n = child(new NestedReader("n").toDist());
    const r1 = a.reply(start());
    const t0 = performance.now();
    const r2 = n.reply(new Msg({ name: "user", metadata: { prev: r1 } }));
    expect(performance.now() - t0).toBeLessThan(200);
    expect(value(await r2)).toBe(10);
  });

  test("a local agent between two remote ones simply awaits what it is given", async () => {
    const a = child(new Adder("a", 100).toDist());
    const local = new Adder("local", 100);
    const c = child(new Adder("c", 100).toDist());
    let m: Msg | ReturnType<typeof a.reply> = start();
    for (let round = 0; round < 2; round++) {
      const r1 = a.reply(m);
      const r2 = local.reply(r1 as never);
      m = c.reply(r2);
    }
    expect(value(await m)).toBe(6);
  });

  test("proxies given as constructor arguments are called from the receiving server, in parallel", async () => {
    const gens = [1, 2, 3, 4].map((v) => child(new Generator(v, 1000).toDist()));
    const g = child(Gather.toDist(true, gens as never));
    expect(await g.count()).toBe(4);
    const t0 = performance.now();
    expect(await g.sum()).toBe(10);
    expect(performance.now() - t0).toBeLessThan(1900);
  });

  test("an object returned by a remote method arrives as a working proxy to it, on its server", async () => {
    const f = child(new Factory().toDist());
    const t = await f.make(5);
    expect(t.oid).toMatch(/^[0-9a-f]{32}$/);
    expect(await t.add(2)).toBe(7);
    expect(await t.where()).toBe(await f.pid());
    // Handed to another child server, the same proxy still reaches the same object.
    const other = child(new Factory().toDist());
    expect(await other.poke(t, 3)).toBe(10);
    expect(await t.n).toBe(10);
  });

  test("a reference whose origin server is gone fails with UNAVAILABLE naming it, and nothing hangs", async () => {
    const a = new Adder("gone", 5000).toDist();
    const b = child(new Adder("b", 10).toDist());
    const r1 = a.reply(start());
    await remoteState(a)!.ready;
    const r2 = b.reply(r1);
    await r2.taskSource!.accepted;
    await a.stop();
    const e = await r2.catch((x: any) => x);
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.message).toContain("child");
  });

  test("a reference to an unknown task is NOT_FOUND", async () => {
    const a = child(new Adder("a", 10).toDist());
    const b = child(new Adder("b", 10).toDist());
    const r1 = a.reply(start());
    await r1;
    await a.delete();
    const r2 = b.reply(r1);
    expect(value(await r2)).toBe(2);
    expect(NotFoundError).toBeDefined();
  });
});
