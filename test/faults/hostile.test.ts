/**
 * Hostile input against a real independent server subprocess (scenarios I1–I5, I10): names that
 * must stay unreachable, prototype pollution, pathological nesting, oversized messages both
 * ways, garbage on the TCP port, malformed protobuf on the real method paths, and a fuzz over
 * every RPC. After each, the server keeps serving.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ResourceExhaustedError, RpcClient, UnimplementedError, connect, type Remote } from "../../src/index.ts";
import { connect as h2connect } from "node:http2";
import { encodeValue } from "../../src/core/codec.ts";
import { decodeValue } from "../../src/core/codec-decode.ts";
import { closeAllConnections, connectionFor } from "../../src/client/connections.ts";
import { DEFAULT_LIMITS } from "../../src/core/limits.ts";
import { randomId } from "../../src/core/ids.ts";
import { agentServerService } from "../../src/wire/grpc-proto.ts";
import { RPCS, RawGrpc, subServer, type SubServer } from "../fixtures/fault-harness.ts";
import { Sturdy } from "../fixtures/fault-server/agents.ts";
import { rejection } from "../helpers/grpc.ts";

/** The server's message limit: small, so that "at the limit" and "one past it" are cheap. */
const LIMIT = 256 * 1024;

let s: SubServer;
let w: Remote<Sturdy>;

beforeAll(async () => {
  // Short server-side waits: a fuzzed Wait for a task that never comes answers within 0.5 s.
  s = await subServer({ maxMessageBytes: LIMIT, maxTimeoutSeconds: 0.5 });
  w = Sturdy.toDist(s.conf);
  expect(await w.ping()).toBe("pong");
});

afterAll(async () => {
  await s[Symbol.asyncDispose]();
  await closeAllConnections();
});

/** A codec frame holding exactly this JSON text (no encoder in between to clean it up). */
function frame(json: string): Uint8Array {
  const body = new TextEncoder().encode(json);
  const f = new Uint8Array(4 + body.length);
  new DataView(f.buffer).setUint32(0, body.length, true);
  f.set(body, 4);
  return f;
}

/** Send a call request as it is, through the library's connection; resolves with the answer. */
function rawCall(name: string, args: Uint8Array, oid = w.oid) {
  return connectionFor(s.conf).send({ t: "call", oid, name, args });
}

/** The server is still serving: a fresh object on it answers. */
async function stillServing(): Promise<void> {
  expect(s.alive()).toBe(true);
  const fresh = Sturdy.toDist(s.conf);
  expect(await fresh.echo({ still: "fine" })).toEqual({ still: "fine" });
  await fresh.delete();
}

describe("names (I4, I5)", () => {
  test("an unknown method or attribute is UNIMPLEMENTED, through a proxy, connect() and a raw request", async () => {
    const viaProxy = await rejection((w as unknown as Record<string, PromiseLike<unknown>>).noSuchThing!);
    expect(viaProxy).toBeInstanceOf(UnimplementedError);
    expect(viaProxy.code).toBe("UNIMPLEMENTED");
    expect(viaProxy.message).toContain("noSuchThing");
    const c = connect<Sturdy>({ ...s.conf, oid: w.oid });
    expect(await rejection((c as unknown as Record<string, PromiseLike<unknown>>).nope!)).toBeInstanceOf(UnimplementedError);
    const r = await rawCall("nope", encodeValue([1, 2]));
    expect(r).toMatchObject({ t: "error", error: { code: "UNIMPLEMENTED" } });
  });

  test("__proto__, constructor, prototype, toString, _private, #private and friends are refused by the server", async () => {
    const names = ["__proto__", "constructor", "prototype", "toString", "valueOf", "hasOwnProperty", "__defineGetter__", "__lookupGetter__", "then", "_x", "_secret", "#waiters", "oid", "toDist", ""];
    for (const name of names) {
      const r = await rawCall(name, encodeValue([]));
      expect(r.t).toBe("error");
      if (r.t === "error") expect(r.error.code).toBe(name === "" ? "INVALID_ARGUMENT" : "UNIMPLEMENTED");
    }
    // Locally, a proxy does not even offer them.
    const p = w as unknown as Record<string, unknown>;
    expect(p._x).toBeUndefined();
    expect(p.constructor).toBeUndefined();
    await stillServing();
  });

  test("an RPC that does not exist is UNIMPLEMENTED at the gRPC level", async () => {
    const raw = new RawGrpc(s.host, s.port);
    try {
      const r = await raw.call("NoSuchRpc", new Uint8Array(0));
      expect(r.code).toBe(12);
    } finally {
      raw.close();
    }
  });
});

describe("prototype pollution (I5, S7)", () => {
  test("payloads with __proto__ / constructor.prototype leave Object.prototype alone on the server", async () => {
    const evil = `{"polluted":"yes"}`;
    const payloads = [
      `[{"__proto__":${evil}}]`,
      `[{"constructor":{"prototype":${evil}}}]`,
      `[{"a":{"__proto__":${evil}}}]`,
      `[{"$as":"obj","v":{"__proto__":${evil}}}]`,
      `[{"$as":"map","v":[["__proto__",${evil}]]}]`,
      `[{"$as":"msg","v":{"name":"n","id":"i","metadata":{"__proto__":${evil}}}}]`,
      `[{"$as":"err","name":"__proto__","message":"m","cause":{"__proto__":${evil}}}]`,
      `[{"$as":"err","name":"constructor","message":"m","code":"x","stack":"s"}]`,
      `[[{"__proto__":{"__proto__":${evil}}}]]`,
    ];
    for (const p of payloads) {
      for (const name of ["echo", "inspect"]) await rawCall(name, frame(p));
    }
    // An own "__proto__" key stays an own key; the object keeps the plain prototype.
    const seen = await rawCall("inspect", frame(`[{"__proto__":${evil}}]`));
    expect(seen.t).toBe("value");
    if (seen.t === "value") expect(decodeValue(seen.value)).toEqual({ plainProto: true, own: ["__proto__"], polluted: undefined });
    expect(await w.inspect({})).toEqual({ plainProto: true, own: [], polluted: undefined });
    // As constructor arguments and as model configs too.
    await connectionFor(s.conf).send({ t: "create", oid: randomId(), cls: "Sturdy", args: frame(`[{"__proto__":${evil}}]`) });
    await connectionFor(s.conf).send({ t: "setModelConfigs", configs: frame(`{"__proto__":${evil},"config_name":"p","model_type":"openai_chat"}`) });
    expect(await w.polluted()).toEqual({ plain: undefined, own: false, fnProto: undefined });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("pathological structure (I3)", () => {
  test("a 100k-deep payload is INVALID_ARGUMENT, not a crash; the depth limit holds at the limit and one past it", async () => {
    for (const deep of ["[".repeat(100_000) + "]".repeat(100_000), `[${'{"a":'.repeat(40_000)}1${"}".repeat(40_000)}]`, `[${'{"$as":"set","v":['.repeat(12_000)}${"]}".repeat(12_000)}]`]) {
      const r = await rawCall("echo", frame(deep));
      expect(r).toMatchObject({ t: "error", error: { code: "INVALID_ARGUMENT" } });
    }
    // args = [x], x nested `d` arrays deep: the whole frame is d + 1 deep.
    const nested = (d: number) => `[${"[".repeat(d)}${"]".repeat(d)}]`;
    const max = DEFAULT_LIMITS.maxDepth - 1;
    const atLimit = await rawCall("echo", frame(nested(max)));
    expect(atLimit.t).toBe("value");
    const over = await rawCall("echo", frame(nested(max + 1)));
    expect(over).toMatchObject({ t: "error", error: { code: "INVALID_ARGUMENT" } });
    await stillServing();
  });

  test("huge numeric strings are refused or harmless, fast", async () => {
    const t0 = performance.now();
    const big = await rawCall("echo", frame(`[{"$as":"big","v":"${"9".repeat(200_000)}"}]`));
    expect(big).toMatchObject({ t: "error", error: { code: "INVALID_ARGUMENT" } });
    const plain = await rawCall("echo", frame(`[${"1".repeat(50_000)}]`));
    expect(["value", "error"]).toContain(plain.t);
    expect(performance.now() - t0).toBeLessThan(2000);
    await stillServing();
  });
});

describe("oversized messages (I2)", () => {
  /** Size of the frame of `length("x".repeat(n))`'s arguments, and of `text(n)`'s result. */
  const argFrame = (n: number) => encodeValue(["x".repeat(n)]).byteLength;
  const resultFrame = (n: number) => encodeValue("x".repeat(n)).byteLength;

  test("a request at the server's limit is served; one byte more is RESOURCE_EXHAUSTED and runs nothing", async () => {
    const n = LIMIT - argFrame(0);
    expect(argFrame(n)).toBe(LIMIT);
    const before = await w.calls;
    expect(await w.length("x".repeat(n))).toBe(n);
    const e = await rejection(w.length("x".repeat(n + 1)));
    expect(e).toBeInstanceOf(ResourceExhaustedError);
    expect(e.code).toBe("RESOURCE_EXHAUSTED");
    expect(await w.calls).toBe(before + 1);
    await stillServing();
  });

  test("a request over the client's own limit fails here, before it is sent", async () => {
    const mine = 64 * 1024;
    // A connection (host alias 127.0.0.1) whose limit is half the server's.
    const client = new RpcClient("127.0.0.1", s.port, { maxMessageBytes: mine });
    expect(await client.isAlive()).toBe(true);
    const small = connect<Sturdy>({ host: "127.0.0.1", port: s.port, oid: w.oid });
    const n = mine - argFrame(0);
    const before = await w.calls;
    expect(await small.length("x".repeat(n))).toBe(n);
    const t0 = performance.now();
    const e = await rejection(small.length("x".repeat(n + 1)));
    expect(e).toBeInstanceOf(ResourceExhaustedError);
    expect(e.message).toContain("not sent");
    expect(performance.now() - t0).toBeLessThan(100);
    // The server would have taken it (it is under its limit): it never arrived.
    expect(await w.calls).toBe(before + 1);
  });

  test("a result over the server's limit fails the call with RESOURCE_EXHAUSTED (sync and async); at the limit it is delivered", async () => {
    const n = LIMIT - resultFrame(0);
    expect(resultFrame(n)).toBe(LIMIT);
    expect((await w.text(n)).length).toBe(n);
    expect((await w.textAsync(n)).length).toBe(n);
    for (const call of [() => w.text(n + 1), () => w.textAsync(n + 1)]) {
      const e = await rejection(call());
      expect(e).toBeInstanceOf(ResourceExhaustedError);
      expect(e.code).toBe("RESOURCE_EXHAUSTED");
    }
    await stillServing();
  });
});

describe("garbage on the wire (I1)", () => {
  /** Open a TCP connection, write `bytes`, and report whether the server closed it within `ms` (a failure deadline; 0: hang up at once). */
  async function tcpGarbage(bytes: Uint8Array, ms = 2000): Promise<"closed" | "open"> {
    const closed = Promise.withResolvers<"closed">();
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port: s.port,
      socket: { data() {}, close: () => closed.resolve("closed"), error: () => closed.resolve("closed") },
    });
    sock.write(bytes);
    let timer: Timer | undefined;
    const open = new Promise<"open">((r) => (timer = setTimeout(() => r("open"), ms)));
    const how = await Promise.race([closed.promise, open]);
    clearTimeout(timer);
    sock.end();
    return how;
  }

  test("random bytes, NUL garbage and bad HTTP/2 on the raw TCP port: that connection is closed, other clients keep working", async () => {
    const bystander = new RpcClient(s.host, s.port);
    expect(await bystander.isAlive()).toBe(true);
    const preface = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
    const random = crypto.getRandomValues(new Uint8Array(4096));
    expect(await tcpGarbage(random)).toBe("closed");
    expect(await tcpGarbage(new Uint8Array(256))).toBe("closed");
    expect(await tcpGarbage(cat(preface, crypto.getRandomValues(new Uint8Array(512))))).toBe("closed");
    expect(await tcpGarbage(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))).toBe("closed");
    // A truncated frame, then we hang up: nothing to answer, nothing to be confused by.
    await tcpGarbage(cat(preface, new Uint8Array([0, 0, 0x12, 4, 0, 0, 0])), 0);
    expect(await bystander.isAlive()).toBe(true);
    await stillServing();
  });

  test("truncated and lying gRPC message frames (over HTTP/2) get an error status; the server keeps serving", async () => {
    /** POST one raw gRPC body to Alive; resolves with the grpc-status the server answered. */
    async function post(body: Uint8Array): Promise<string | undefined> {
      const session = h2connect(`http://127.0.0.1:${s.port}`);
      try {
        const req = session.request({ ":method": "POST", ":path": "/actorscope.AgentServer/Alive", "content-type": "application/grpc", te: "trailers" });
        let status: string | undefined;
        req.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
        req.on("trailers", (t) => (status ??= t["grpc-status"] as string | undefined));
        req.on("data", () => {});
        const closed = new Promise<void>((r) => {
          req.on("close", () => r());
          req.on("error", () => r());
        });
        req.end(Buffer.from(body));
        await closed;
        return status;
      } finally {
        session.close();
      }
    }
    expect(await post(new Uint8Array([0, 0, 0, 3, 0xe8, 1, 2]))).not.toBe("0"); // says 1000 bytes, has 2
    expect(await post(new Uint8Array([0, 0xff, 0xff, 0xff, 0xff]))).toBe("8"); // says 4 GiB: over the limit
    expect(await post(new Uint8Array([1, 0, 0, 0, 2, 1, 2]))).not.toBe("0"); // compressed, with no encoding
    expect(await post(new Uint8Array([0, 0, 0]))).not.toBe("0"); // a cut header
    expect(await post(new Uint8Array([0, 0, 0, 0, 0]))).toBe("0"); // and a well-formed empty Alive
    await stillServing();
  });

  test("malformed protobuf on every real method path is answered (INTERNAL or an error reply), never executed blindly", async () => {
    const raw = new RawGrpc(s.host, s.port);
    const bodies = [
      new Uint8Array([0xff, 0xff, 0xff]),
      new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
      new Uint8Array([0x12, 0x05, 0x61]),
      new Uint8Array([0x0b, 0x0c, 0x0d]),
      crypto.getRandomValues(new Uint8Array(64)),
    ];
    try {
      for (const rpc of RPCS) {
        // Bytes that happen to parse as a valid Stop would stop the server (it is authorized): only undecodable ones here.
        const set = rpc === "Stop" ? bodies.slice(0, 1) : bodies;
        for (const body of set) {
          const r = await raw.call(rpc, body);
          expect(r.code).not.toBe(4);
          // (A Batch that parses to no items is answered by an empty stream.)
          if (r.code === 0 && rpc !== "Batch") expect(r.replies.length).toBeGreaterThan(0);
          else expect([3, 13]).toContain(r.code);
        }
      }
    } finally {
      raw.close();
    }
    await stillServing();
  });

  test("fuzz: random and mutated protobuf bodies to each RPC are each answered or failed, and the server keeps serving", async () => {
    const svc = agentServerService();
    const oid = w.oid;
    const seeds: Record<string, object> = {
      Create: { oid: randomId(), cls: "Sturdy", args: encodeValue([]) },
      Call: { oid, name: "echo", args: encodeValue([{ a: [1, "b"], m: new Map([[1, 2]]) }]), timeoutMs: 1000 },
      Wait: { task: randomId(), timeoutMs: 100, fresh: true },
      Delete: { oid: randomId() },
      DeleteAll: {},
      Describe: { oid },
      List: {},
      Info: {},
      Alive: {},
      Memory: { oid },
      SetModelConfigs: { configs: encodeValue({ config_name: "fz", model_type: "openai_chat", model_name: "m" }) },
      Download: { path: "a/b.txt" },
      Cancel: { task: randomId() },
      Batch: { items: [{ call: { oid, name: "echo", args: encodeValue([1]) } }, { wait: { task: randomId(), timeoutMs: 100 } }, { describe: { oid } }, { delete: { oid: randomId() } }] },
      Release: { task: randomId() },
      Next: { stream: randomId(), max: 4, timeoutMs: 100 },
      Session: { items: [{ wait: { task: randomId(), timeoutMs: 100, fresh: true } }, { call: { oid, name: "echo", args: encodeValue([1]) } }], firstId: 7 },
      Callbacks: { link: randomId() },
    };
    // Every RPC but Stop is fuzzed (bytes that parse as a valid Stop would, rightly, stop it).
    expect(Object.keys(seeds).sort()).toEqual(RPCS.filter((r) => r !== "Stop").sort());
    const seedBytes = Object.fromEntries(Object.entries(seeds).map(([rpc, m]) => [rpc, new Uint8Array(svc[rpc]!.requestSerialize(m))]));
    const rpcs = Object.keys(seeds);
    const raw = new RawGrpc(s.host, s.port);
    const codes = new Map<number, number>();
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...rpcs),
          fc.oneof(
            fc.uint8Array({ maxLength: 200 }).map((b) => ({ kind: "random" as const, b })),
            fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(), fc.uint8Array({ maxLength: 8 })).map(([i, v, cut, ins]) => ({ kind: "mutated" as const, i, v, cut, ins })),
          ),
          async (rpc, m) => {
            let body: Uint8Array;
            if (m.kind === "random") body = m.b;
            else {
              const seed = seedBytes[rpc]!;
              const b = new Uint8Array(Buffer.concat([seed.subarray(0, m.cut % (seed.length + 1)), m.ins, seed.subarray(m.cut % (seed.length + 1))]));
              if (b.length) b[m.i % b.length] = m.v;
              body = b;
            }
            const r = await raw.call(rpc, body, {}, 3000);
            codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
            // Answered within the deadline: never a hang.
            expect(r.code).not.toBe(4);
            if (r.code === 0 && !svc[rpc]!.responseStream) {
              expect(r.replies.length).toBe(1);
              const reply = svc[rpc]!.responseDeserialize(r.replies[0]!) as Record<string, unknown>;
              expect(Object.keys(reply).length).toBe(1);
            }
          },
        ),
        { numRuns: 1000 },
      );
    } finally {
      raw.close();
    }
    // Both outcomes were exercised: answers (including error replies) and refused bodies.
    expect(codes.get(0)).toBeGreaterThan(0);
    expect(codes.get(13)).toBeGreaterThan(0);
    await stillServing();
    expect(await new RpcClient(s.host, s.port).isAlive()).toBe(true);
  });
});
