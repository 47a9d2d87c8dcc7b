/**
 * Callbacks on real processes, in both modes: child servers (the server calls back up the IPC
 * link) and an independent server in its own process (it calls back over the Callbacks stream
 * this process opened — the test process listens on no port). Order, object methods, errors,
 * release, relays through a third server, caller exit, server-side dispose, and no entries
 * left behind after many calls.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AgentCallError, CodecError, Msg, RpcAgentServerLauncher, callback, type Remote } from "../src/index.ts";
import { HANDLE, callbacks, exportedCallbacks, type OwnCallback } from "../src/client/callback-table.ts";
import { CallbackTools, Crawler } from "./fixtures/callback-agents.ts";
import { childTracker } from "./helpers/children.ts";

const { child, stopAll } = childTracker();
let server: RpcAgentServerLauncher;

beforeAll(async () => {
  server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Crawler, CallbackTools], shutdownGraceMs: 1000 });
  await server.launch({ inSubprocess: true });
});

afterAll(async () => {
  await stopAll();
  await server.shutdown();
});

/** The record behind a callback handle. */
function ownOf(h: object): OwnCallback {
  return (h as Record<symbol, OwnCallback>)[HANDLE]!;
}

/** Poll `cond` until it holds, or fail after `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
}

const modes: Array<[string, () => Remote<Crawler>]> = [
  ["child mode (IPC)", () => child(new Crawler().toDist())],
  ["independent mode (gRPC, no port on the caller)", () => new Crawler().toDist({ host: server.host, port: server.port })],
];

for (const [mode, make] of modes) {
  describe(`callbacks in ${mode}`, () => {
    let c: Remote<Crawler>;
    beforeAll(() => {
      c = make();
    });

    test("a function callback reports progress to the caller, in order, while the call runs", async () => {
      const seen: Array<[number, number]> = [];
      using progress = callback((i: number, n: number) => {
        seen.push([i, n]);
      });
      expect(await c.crawl(5, progress).result()).toBe("crawled 5");
      expect(seen).toEqual([[1, 5], [2, 5], [3, 5], [4, 5], [5, 5]]);
    });

    test("an async method takes a callback too", async () => {
      const seen: number[] = [];
      using progress = callback((i: number) => void seen.push(i));
      expect(await c.crawlAsync(3, progress).result()).toBe("crawled 3");
      expect(seen).toEqual([1, 2, 3]);
    });

    test("an object callback arrives as a proxy of its methods only, each returning a promise", async () => {
      const user = { secret: "never sent", answer: (q: string) => `yes to ${q}`, _hidden: () => "no" };
      using u = callback(user);
      expect(await c.ask("tea?", u).result()).toBe("the user said yes to tea?");
      const tools = make === modes[0]![1] ? child(new CallbackTools().toDist()) : new CallbackTools().toDist({ host: server.host, port: server.port });
      expect(await tools.keysOf(u).result()).toEqual(["answer"]);
    });

    test("a callback inside a Msg's metadata works", async () => {
      const tools = make === modes[0]![1] ? child(new CallbackTools().toDist()) : new CallbackTools().toDist({ host: server.host, port: server.port });
      using progress = callback((s: string) => `caller got ${s}`);
      const msg = new Msg({ name: "user", role: "user", content: "go", metadata: { progress } });
      expect(await tools.fromMsg(msg).result()).toBe("caller got from msg");
    });

    test("an error thrown by the callback rejects the server's call with AgentCallError, keeping its name", async () => {
      using bad = callback(() => {
        throw new RangeError("out of range here");
      });
      const r = await c.tryCall(bad, 1).result();
      expect(r.ok).toBe(false);
      expect(r.name).toBe("AgentCallError");
      expect(r.message).toContain("RangeError");
      expect(r.message).toContain("out of range here");
      // Uncaught in the method, it reaches the caller as AgentCallError too.
      const err = await c.crawl(1, bad).result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AgentCallError);
    });

    test("a callback may be called many times at once; each call settles once with its own value", async () => {
      let calls = 0;
      using double = callback(async (i: number) => {
        calls++;
        await Bun.sleep(i % 3);
        return i * 2;
      });
      const out = await c.fanOut(200, double).result();
      expect(out).toEqual(Array.from({ length: 200 }, (_, i) => i * 2));
      expect(calls).toBe(200);
    });

    test("after release the server's stub fails NOT_FOUND at once", async () => {
      const f = callback((x: number) => x + 1);
      await c.keep(f).result();
      expect(await c.callKept(1).result()).toMatchObject({ ok: true, value: 2 });
      f.release();
      expect(f.released).toBe(true);
      const r = await c.callKept(1).result();
      expect(r).toMatchObject({ ok: false, code: "NOT_FOUND" });
      expect(r.ms).toBeLessThan(1000);
      await expect(c.keep(f).result()).rejects.toThrow(/released/);
    });

    test("a stub the server disposes is forgotten by the caller, and fails at once on the server", async () => {
      const f = callback((x: number) => x);
      await c.keep(f).result();
      const id = ownOf(f).id;
      expect(callbacks.exported.has(id)).toBe(true);
      await c.disposeKept().result();
      await until(() => !callbacks.exported.has(id));
      expect(await c.callKept(1).result()).toMatchObject({ ok: false, code: "NOT_FOUND" });
    });

    test("a stub sent back to the caller is the original function again", async () => {
      const fn = (x: number) => x * 3;
      using f = callback(fn);
      expect(await c.giveBack(f).result()).toBe(fn);
      expect(await c.kind(f).result()).toBe("function");
    });

    test("a callback handed on by the server to a third server still calls the caller (relayed)", async () => {
      const third = new Crawler().toDist({ host: server.host, port: server.port });
      const seen: number[] = [];
      using progress = callback((i: number) => void seen.push(i));
      expect(await c.relay(third, 3, progress).result()).toBe("crawled 3");
      expect(seen).toEqual([1, 2, 3]);
    });

    test("no entries are left after many calls with fresh callbacks that are never released", async () => {
      const before = exportedCallbacks();
      for (let i = 0; i < 100; i++) await c.crawl(1, callback(() => i)).result();
      expect(exportedCallbacks()).toBeGreaterThan(before);
      // The server collects garbage: its dropped stubs are reported and the caller forgets them.
      // (Again while any are left: a collector that scans stacks conservatively may keep one a while.)
      const end = performance.now() + 10_000;
      while (exportedCallbacks() > before && performance.now() < end) await c.collect().result();
      expect(exportedCallbacks()).toBeLessThanOrEqual(before);
    });
  });
}

describe("callbacks between child servers and on exit", () => {
  test("a callback relayed between two sibling child servers reaches the caller through the parent", async () => {
    const a = child(new Crawler().toDist());
    const b = child(new Crawler().toDist());
    const seen: number[] = [];
    using progress = callback((i: number) => void seen.push(i));
    expect(await a.relay(b, 4, progress).result()).toBe("crawled 4");
    expect(seen).toEqual([1, 2, 3, 4]);
  });

  test("a callback made in a child server works from a sibling, and fails UNAVAILABLE at once when that child is gone", async () => {
    const maker = new CallbackTools().toDist();
    const holder = child(new Crawler().toDist());
    await maker.handOut(holder).result();
    const ok = await holder.callKept("hi").result();
    expect(ok.ok).toBe(true);
    expect(String(ok.value)).toMatch(/^handed out by \d+: hi$/);
    await maker.stop();
    const r = await holder.callKept("again").result();
    expect(r).toMatchObject({ ok: false, code: "UNAVAILABLE" });
    expect(r.ms).toBeLessThan(1000);
  });

  test("when the caller process exits, the independent server's stub fails UNAVAILABLE at once, and the caller exited on its own", async () => {
    const holder = new Crawler().toDist({ host: server.host, port: server.port });
    expect(await holder.kind(1).result()).toBe("number");
    const script = `
      import { callback, connect } from ${JSON.stringify(new URL("../src/index.ts", import.meta.url).pathname)};
      const h = connect({ host: ${JSON.stringify(server.host)}, port: ${server.port}, oid: ${JSON.stringify(holder.oid)} });
      await h.keep(callback((x) => "caller alive: " + x)).result();
      console.log(JSON.stringify(await h.callKept("ping").result()));
    `;
    const p = Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(p.stdout).text();
    expect(await p.exited).toBe(0);
    expect(JSON.parse(out.trim())).toMatchObject({ ok: true, value: "caller alive: ping" });
    const r = await holder.callKept("late").result();
    expect(r).toMatchObject({ ok: false, code: "UNAVAILABLE" });
    expect(r.ms).toBeLessThan(1000);
  });
});

describe("what is never exposed", () => {
  test("a plain function is refused, and the message names callback()", async () => {
    const c = new Crawler().toDist({ host: server.host, port: server.port });
    const err = await c.crawl(1, (() => 1) as never).result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CodecError);
    expect((err as Error).message).toMatch(/callback\(fn\)/);
  });

  test("a callback is answered only on the links it was handed to", async () => {
    const c = child(new Crawler().toDist());
    using f = callback(() => 1);
    await c.keep(f).result();
    const id = ownOf(f).id;
    expect(callbacks.target(id, "link:0123456789abcdef0123456789abcdef")).toBeUndefined();
    expect(callbacks.target(id, "child:someone-else")).toBeUndefined();
    expect([...callbacks.exported.get(id)!.grants.keys()]).toHaveLength(1);
  });
});

describe("callbacks to objects a ServerGroup places", () => {
  test("a method call made while the group is still choosing waits for the choice, then calls back", async () => {
    const { ServerGroup } = await import("../src/index.ts");
    const g = new ServerGroup([{ host: server.host, port: server.port }]);
    const c = new Crawler().toDist(g);
    const seen: number[] = [];
    using progress = callback((i: number) => void seen.push(i));
    expect(await c.crawl(2, progress).result()).toBe("crawled 2");
    expect(seen).toEqual([1, 2]);
  });
});

describe("callbacks to isolated agents", () => {
  test("an agent in its own child under an --isolate server calls the caller back through that server", async () => {
    const iso = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Crawler], isolate: true, shutdownGraceMs: 1000 });
    await iso.launch({ inSubprocess: true });
    try {
      const c = new Crawler().toDist({ host: iso.host, port: iso.port });
      const seen: number[] = [];
      using progress = callback((i: number) => void seen.push(i));
      expect(await c.crawl(3, progress).result()).toBe("crawled 3");
      expect(seen).toEqual([1, 2, 3]);
      using user = callback({ answer: (q: string) => `isolated ${q}` });
      expect(await c.ask("ok?", user).result()).toBe("the user said isolated ok?");
    } finally {
      await iso.shutdown();
    }
  });
});

describe("what a callback costs when there is none", () => {
  test("calls without callbacks open no Callbacks stream; the first callback opens one", async () => {
    const local = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Crawler], shutdownGraceMs: 500 });
    await local.launch();
    try {
      // Server and client share this process: the server's inbound links are in the same table.
      const before = callbacks.links.size;
      const c = new Crawler().toDist({ host: local.host, port: local.port });
      expect(await c.kind(1).result()).toBe("number");
      expect(await c.crawl(0, (() => {}) as never).result().catch(() => "refused")).toBe("refused");
      expect(callbacks.links.size).toBe(before);
      using f = callback(() => 1);
      await c.keep(f).result();
      await until(() => callbacks.links.size === before + 1);
    } finally {
      await local.shutdown();
    }
  });
});
