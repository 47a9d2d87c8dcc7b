import { childTracker } from "./helpers/children.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Msg, RpcAgentServerLauncher, type Remote } from "../src/index.ts";
import { Adder, Factory, Gather, Generator } from "./fixtures/pipeline-agents.ts";

const classes = [Adder, Gather, Generator, Factory];
let s1: RpcAgentServerLauncher;
let s2: RpcAgentServerLauncher;
const { child, stopAll } = childTracker();

beforeAll(async () => {
  s1 = new RpcAgentServerLauncher({ port: 0, customAgentClasses: classes });
  s2 = new RpcAgentServerLauncher({ port: 0, customAgentClasses: classes });
  await Promise.all([s1.launch(), s2.launch()]);
});
afterAll(async () => {
  await stopAll();
  await Promise.all([s1.shutdown(), s2.shutdown()]);
});

const at = (s: RpcAgentServerLauncher) => ({ host: s.host, port: s.port });
const value = (m: Msg) => (m.metadata as { value: number }).value;
const start = () => new Msg({ name: "user", metadata: { value: 0 } });

describe("pipelining across child and independent servers", () => {
  test("a chain over two independent servers returns at once and resolves server to server", async () => {
    const a = new Adder("a", 300).toDist(at(s1));
    const b = new Adder("b", 300).toDist(at(s2));
    const c = new Adder("c", 300).toDist(at(s1));
    await Promise.all([a.name, b.name, c.name]);
    const t0 = performance.now();
    const r3 = c.reply(b.reply(a.reply(start())));
    expect(performance.now() - t0).toBeLessThan(100);
    expect(value(await r3)).toBe(3);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(900);
  });

  test("a result of a child server is resolved by an independent server, and the other way round", async () => {
    const kid = child(new Adder("kid", 200).toDist());
    const ind = new Adder("ind", 200).toDist(at(s1));
    const kid2 = child(new Adder("kid2", 200).toDist());
    const r = kid2.reply(ind.reply(kid.reply(start())));
    expect(value(await r)).toBe(3);
  });

  test("gather agents on two servers call generators spread over both, overlapping", async () => {
    const gens = [1, 2, 3, 4].map((v, i) => Generator.toDist(at(i % 2 ? s2 : s1), v, 1000));
    const g1 = Gather.toDist(at(s1), gens);
    const g2 = Gather.toDist(at(s2), gens);
    await Promise.all([g1.count(), g2.count()]);
    const t0 = performance.now();
    const [x, y] = await Promise.all([g1.sum(), g2.sum()]);
    expect([x, y]).toEqual([10, 10]);
    expect(performance.now() - t0).toBeLessThan(1900);
  });

  test("a child-mode proxy handed to an independent server is callable from there", async () => {
    const gens = [5, 6].map((v) => child(new Generator(v, 50).toDist()));
    const g = Gather.toDist(at(s1), gens);
    expect(await g.sum()).toBe(11);
  });

  test("an object made on an independent server comes back as a proxy and can be handed on", async () => {
    const f = Factory.toDist(at(s1));
    const t = await f.make(1);
    expect(t.port).toBe(s1.port);
    expect(await t.add(1)).toBe(2);
    const other = Factory.toDist(at(s2));
    expect(await other.poke(t, 5)).toBe(7);
    const kid = child(new Factory().toDist());
    expect(await kid.poke(t, 1)).toBe(8);
  });
});
