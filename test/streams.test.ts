/**
 * Streams on real processes: child servers (Bun IPC) and independent servers launched in a
 * subprocess (gRPC). Order, first item before the end, break running `finally`, bounded
 * run-ahead, errors after items, kill -9 mid-stream, streams handed between servers, and
 * `DialogAgent.replyStream` against the local fake OpenAI server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  AgentCallError,
  AgentServerNotAliveError,
  CancelledError,
  DeadlineExceededError,
  DialogAgent,
  Msg,
  RemoteStream,
  RpcAgentServerLauncher,
  RpcClient,
  connect,
  init,
  withOptions,
  type ModelConfig,
  type Remote,
} from "../src/index.ts";
import { Streamer } from "./fixtures/stream-agents.ts";
import { startFakeChat, type FakeChat } from "./fixtures/models-fake-chat.ts";
import { childTracker } from "./helpers/children.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { decodeFrom } from "../src/client/proxy.ts";

const { child, stopAll } = childTracker();
const launchers: RpcAgentServerLauncher[] = [];
let shared: { host: string; port: number };
let fake: FakeChat;
const KEY = "sk-streams-test-0123456789";

function chatConfig(name: string): ModelConfig {
  return { config_name: name, model_type: "openai_chat", model_name: "stream-model", api_key: KEY, client_args: { base_url: fake.baseUrl } };
}

/** An independent server in its own process (gRPC). */
async function independentServer(): Promise<{ host: string; port: number; launcher: RpcAgentServerLauncher }> {
  const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Streamer, DialogAgent], shutdownGraceMs: 1000 });
  launchers.push(l);
  await l.launch({ inSubprocess: true });
  return { host: l.host, port: l.port, launcher: l };
}

beforeAll(async () => {
  fake = startFakeChat(KEY);
  init({ modelConfigs: [chatConfig("st-stream")] });
  const s = await independentServer();
  shared = { host: s.host, port: s.port };
});

afterAll(async () => {
  await stopAll();
  await Promise.all(launchers.map((l) => l.shutdown()));
  await fake.stop();
});

async function collect<T>(s: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of s) out.push(x);
  return out;
}

/** Read `read` until it gives `want` (remote reads, no sleeps; bounded). */
async function until<T>(read: () => PromiseLike<T>, want: T): Promise<T> {
  let v = await read();
  for (let i = 0; i < 500 && v !== want; i++) v = await read();
  return v;
}

const MODES = {
  child: () => child(new Streamer().toDist()),
  independent: () => Streamer.toDist(shared),
} as const;

describe.each(["child", "independent"] as const)("streams, %s mode", (mode) => {
  const make = (): Remote<Streamer> => MODES[mode]();

  test("a generator method streams every item, in order; a RemoteStream exists at once", async () => {
    const s = make();
    const st = s.count(2000);
    expect(st).toBeInstanceOf(RemoteStream);
    expect(await collect(st)).toEqual([...Array(2000).keys()]);
    expect(await collect(s.letters("xyz"))).toEqual(["x", "y", "z"]);
  });

  test("the first item arrives before the generator ends", async () => {
    const s = make();
    const it = s.gated();
    expect(await it.next()).toEqual({ value: "first", done: false });
    const last = it.next();
    await s.open();
    expect((await last).value).toBe("last");
    expect((await it.next()).done).toBe(true);
  });

  test("break runs the generator's finally on the server, with currentCall().signal aborted", async () => {
    const s = make();
    for await (const x of s.endless()) if (x === 3) break;
    expect(await until(() => s.finallyRan, 1)).toBe(1);
    expect(await s.abortedInFinally).toBe(true);
  });

  test("a slow consumer: the producer stops within its window, other calls go on, reading resumes it", async () => {
    const s = make();
    const it = s.endless();
    expect((await it.next()).value).toBe(0);
    // The server's window (32) plus what the client holds (≤ 2 pulls of 32).
    let seen = 0;
    for (let i = 0; i < 30; i++) seen = Math.max(seen, await s.produced);
    expect(seen).toBeLessThanOrEqual(32 * 3 + 1);
    // A paused stream holds no capacity: an async call (itself pulling a stream) runs.
    expect(await s.sumLater(s.count(4))).toBe(6);
    for (let i = 1; i < 300; i++) expect((await it.next()).value).toBe(i);
    expect(await s.produced).toBeGreaterThanOrEqual(300);
    await it.return();
  });

  test("an exception in the generator arrives after every item before it, as AgentCallError", async () => {
    const s = make();
    const got: number[] = [];
    const e = await (async () => {
      for await (const x of s.failAfter(100)) got.push(x);
    })().catch((x: unknown) => x);
    expect(got).toEqual([...Array(100).keys()]);
    expect(e).toBeInstanceOf(AgentCallError);
    expect((e as AgentCallError).remote.name).toBe("RangeError");
    expect((e as AgentCallError).remote.message).toBe("boom after 100");
    expect((e as AgentCallError).remote.stack).toContain("failAfter");
  });

  test("binary chunks and codec values arrive intact", async () => {
    const s = make();
    const chunks = await collect(s.chunks(20, 64 * 1024));
    expect(chunks.length).toBe(20);
    chunks.forEach((c, i) => {
      expect(c.byteLength).toBe(64 * 1024);
      expect(c[0]).toBe(i);
      expect(c[65535]).toBe(i);
    });
    const v = await collect(s.values());
    expect(v).toEqual([new Map([["a", 1]]), new Uint8Array([1, 2, 3]), { nested: [new Date(5), 2n] }]);
  });

  test("a stalled stream fails DEADLINE_EXCEEDED per item with timeoutMs, CANCELLED with a signal", async () => {
    const s = make();
    await s.pid(); // the server is up: the 300 ms deadline is the first item's, not a child's start-up
    const it = withOptions(s, { timeoutMs: 300 }).stall();
    expect((await it.next()).value).toBe(1);
    const t0 = performance.now();
    expect(await it.next().catch((x: unknown) => x)).toBeInstanceOf(DeadlineExceededError);
    expect(performance.now() - t0).toBeLessThan(1500);
    const ctl = new AbortController();
    const it2 = withOptions(s, { signal: ctl.signal }).stall();
    expect((await it2.next()).value).toBe(1);
    const p = it2.next().catch((x: unknown) => x);
    ctl.abort();
    expect(await p).toBeInstanceOf(CancelledError);
  });

  test("kill -9 of the producing server mid-stream fails the consumer with UNAVAILABLE within 1 s", async () => {
    const s = mode === "child" ? child(new Streamer().toDist()) : Streamer.toDist(await independentServer());
    const pid = await s.pid();
    const it = s.stall();
    expect((await it.next()).value).toBe(1);
    const waiting = it.next().catch((x: unknown) => x);
    const t0 = performance.now();
    process.kill(pid, "SIGKILL");
    const e = await waiting;
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect((e as AgentServerNotAliveError).code).toBe("UNAVAILABLE");
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a stream handed to a second server is pulled by that server from the producer", async () => {
    const a = make();
    const b = make();
    expect(await b.sum(a.count(1000))).toBe(499_500);
    expect(await b.sumLater(a.count(10))).toBe(45);
    expect(await collect(b.doubled(a.count(5)))).toEqual([0, 2, 4, 6, 8]);
  });

  test("DialogAgent.replyStream streams the model's chunks and remembers the whole reply", async () => {
    let bob: Remote<DialogAgent>;
    if (mode === "child") bob = child(new DialogAgent("Bob", { sysPrompt: "You are Bob.", modelConfigName: "st-stream" }).toDist());
    else {
      const c = new RpcClient(shared.host, shared.port);
      await c.setModelConfigs([chatConfig("st-stream")]);
      c.close();
      bob = DialogAgent.toDist(shared, "Bob", { sysPrompt: "You are Bob.", modelConfigName: "st-stream" });
    }
    const chunks = await collect(bob.replyStream(new Msg({ name: "user", role: "user", content: "hello there, Bob" })));
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.join("")).toBe("echo(stream-model): hello there, Bob");
    const st = remoteState(bob)!;
    const memory = decodeFrom(await st.conn.value({ t: "memory", oid: st.oid })) as Msg[];
    expect(memory.at(-1)?.content).toBe("echo(stream-model): hello there, Bob");
    expect(memory.at(-1)?.name).toBe("Bob");
  });
});

describe("streams across modes", () => {
  test("child → independent and independent → child: the receiving server pulls from the producer", async () => {
    const c = child(new Streamer().toDist());
    const ind = Streamer.toDist(shared);
    expect(await ind.sum(c.count(100))).toBe(4950);
    expect(await c.sum(ind.count(100))).toBe(4950);
    expect(await collect(c.doubled(ind.count(3)))).toEqual([0, 2, 4]);
  });

  test("independent → independent: one server pulls from another", async () => {
    const other = await independentServer();
    const a = Streamer.toDist(shared);
    const b = Streamer.toDist(other);
    expect(await b.sum(a.count(500))).toBe(124_750);
  });

  test("a launcher's streamWindow bounds how far a producer runs ahead of a consumer that stopped", async () => {
    const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Streamer], shutdownGraceMs: 1000, streamWindow: 4 });
    launchers.push(l);
    await l.launch({ inSubprocess: true });
    const s = Streamer.toDist({ host: l.host, port: l.port });
    const it = s.endless();
    expect((await it.next()).value).toBe(0);
    let seen = 0;
    for (let i = 0; i < 30; i++) seen = Math.max(seen, await s.produced);
    // 4 on the server, at most 2 pulls of ≤ 4 here, and the one being produced.
    expect(seen).toBeLessThanOrEqual(4 * 3 + 1);
    await it.return();
    expect(() => new RpcAgentServerLauncher({ streamWindow: 0 })).toThrow("streamWindow must be a positive integer");
  });

  test("DistConf.streamWindow bounds how far a child server's producer runs ahead", async () => {
    const s = child(new Streamer().toDist({ streamWindow: 4 }));
    const it = s.endless();
    expect((await it.next()).value).toBe(0);
    let seen = 0;
    for (let i = 0; i < 30; i++) seen = Math.max(seen, await s.produced);
    expect(seen).toBeLessThanOrEqual(4 * 3 + 1);
    await it.return();
    expect(() => new Streamer().toDist({ streamWindow: 0 })).toThrow("DistConf.streamWindow must be a positive number");
  });

  test("connect(): a stream method called before the class is known is iterable, and awaiting it gives the RemoteStream", async () => {
    const s = Streamer.toDist(shared);
    await s.pid();
    const c = connect<Streamer>({ ...shared, oid: s.oid });
    expect(await collect(c.count(3))).toEqual([0, 1, 2]);
    const later = connect<Streamer>({ ...shared, oid: s.oid });
    const st = (await (later.count(2) as unknown as PromiseLike<RemoteStream<number>>)) as RemoteStream<number>;
    expect(st).toBeInstanceOf(RemoteStream);
    expect(await collect(st)).toEqual([0, 1]);
    // Once the class is known, the call is a RemoteStream at once.
    const third = later.count(1);
    expect(third).toBeInstanceOf(RemoteStream);
    await third.cancel();
  });

  test("over gRPC, 300 pulls parked on one connection hold no HTTP/2 stream: calls still answer at once", async () => {
    const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Streamer], shutdownGraceMs: 1000, capacity: 400 });
    launchers.push(l);
    await l.launch({ inSubprocess: true });
    const s = Streamer.toDist({ host: l.host, port: l.port });
    const streams = Array.from({ length: 300 }, () => s.gated());
    expect((await Promise.all(streams.map((st) => st.next()))).every((r) => r.value === "first")).toBe(true);
    // Each stream's producer now waits for its gate, and each consumer's pull is parked.
    const lasts = streams.map((st) => st.next());
    const t0 = performance.now();
    expect(await s.pid()).toBeGreaterThan(0);
    expect(performance.now() - t0).toBeLessThan(1000);
    await s.open();
    expect((await Promise.all(lasts)).every((r) => r.value === "last")).toBe(true);
  });

  test("a stream already read from cannot be handed on", async () => {
    const s = Streamer.toDist(shared);
    const st = s.count(5);
    await st.next();
    const e = await s.sum(st).catch((x: unknown) => x);
    expect((e as Error).message).toContain("has been read from cannot be passed on");
    await st.cancel();
  });
});
