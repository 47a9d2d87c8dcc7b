/**
 * Large binary arguments and results end to end: in child mode a large leaf arrives as the
 * array Bun's clone made for it (no frame around it: nobody copied it into one), in both modes
 * the bytes are intact both ways, and what a server keeps and changes later is answered as it
 * was when returned.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeAllConnections } from "../src/client/connections.ts";
import { configureLimits, type Remote } from "../src/index.ts";
import { processLimits } from "../src/client/refs.ts";
import { Bytes, type LeafShape } from "./fixtures/large-agents.ts";
import { grpcAgentClasses } from "./fixtures/grpc-agents.ts";
import { startServer, type TestServer } from "./helpers/grpc.ts";

const MB = 1_000_000;
const payload = (n: number) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 4096) b[i] = (i >> 12) & 255;
  b[n - 1] = 42;
  return b;
};

let child: Remote<Bytes>;
let server: TestServer;
let remote: Remote<Bytes>;

beforeAll(async () => {
  child = new Bytes().toDist();
  server = await startServer({ customAgentClasses: [...grpcAgentClasses, Bytes] });
  remote = new Bytes().toDist({ host: server.host, port: server.port });
});

afterAll(async () => {
  await child.stop();
  await server.shutdown();
  await closeAllConnections();
});

describe("child mode", () => {
  test("a large argument arrives as an array of its own (the clone's), not a view into a frame", async () => {
    const b = payload(3 * MB);
    const s = (await child.shape(b)) as LeafShape;
    expect(s).toEqual({ n: 3 * MB, whole: true, first: 0, last: 42 });
  });

  test("a large result comes back as an array of its own, intact", async () => {
    const b = payload(3 * MB);
    const r = (await child.echo(b)) as Uint8Array;
    expect(r.byteLength).toBe(b.byteLength);
    expect(r.byteOffset === 0 && r.byteLength === r.buffer.byteLength).toBe(true);
    expect(Buffer.compare(r, b)).toBe(0);
  });

  test("a large view into a bigger buffer goes as just its bytes", async () => {
    const backing = payload(4 * MB);
    const view = backing.subarray(MB, 2 * MB);
    const s = (await child.shape(view)) as LeafShape;
    expect(s.n).toBe(MB);
    expect(s.whole).toBe(true);
    expect(s.first).toBe(view[0]!);
  });

  test("a result the agent keeps and changes later was answered as it was when returned", async () => {
    const r = (await child.keep(payload(MB).fill(5))) as Uint8Array;
    expect(await child.bump()).toBe(6);
    expect(r[0]).toBe(5);
  });

  test("mixed values with several large leaves and small ones round-trip", async () => {
    const v = { a: payload(200_000), b: [new Float64Array(30_000).fill(2.5), "s", new Uint8Array([1, 2, 3])], c: payload(70_001).buffer };
    const r = (await child.echo(v)) as typeof v;
    expect(r).toEqual(v);
  });

  test("a child server takes the process's message limit: 40 MB passes after configureLimits(64 MiB); a child started before refuses it RESOURCE_EXHAUSTED", async () => {
    const before = { ...processLimits() };
    const big = payload(40 * MB);
    configureLimits({ maxMessageBytes: 64 * 1024 * 1024 });
    const roomy = new Bytes().toDist();
    try {
      const r = (await roomy.echo(big)) as Uint8Array;
      expect(r.byteLength).toBe(big.byteLength);
      expect(Buffer.compare(r, big)).toBe(0);
      // The child spawned under the 32 MiB default keeps it.
      const e = await child.echo(big).then(
        () => undefined,
        (x: unknown) => x as { code?: string },
      );
      expect(e?.code).toBe("RESOURCE_EXHAUSTED");
      expect(await child.echo(1)).toBe(1);
    } finally {
      configureLimits(before);
      await roomy.stop();
    }
  });
});

describe("independent mode", () => {
  test("large arguments and results round-trip intact", async () => {
    const b = payload(5 * MB);
    const s = (await remote.shape(b)) as LeafShape;
    expect(s).toEqual({ n: 5 * MB, whole: false, first: 0, last: 42 });
    const r = (await remote.echo(b)) as Uint8Array;
    expect(Buffer.compare(r, b)).toBe(0);
  });

  test("mixed values with several large leaves and small ones round-trip", async () => {
    const v = { a: payload(200_000), b: [new Float64Array(30_000).fill(2.5), "s", new Uint8Array([1, 2, 3])], c: payload(70_001).buffer };
    expect(await remote.echo(v)).toEqual(v);
  });

  test("a result the agent keeps and changes later was answered as it was when returned", async () => {
    const r = (await remote.keep(payload(MB).fill(5))) as Uint8Array;
    expect(await remote.bump()).toBe(6);
    expect(r[0]).toBe(5);
  });

  test("several large sync calls issued together (a batch of their answers) all arrive intact", async () => {
    const bs = [1, 2, 3].map((k) => payload(100_000 + k).fill(k));
    const rs = (await Promise.all(bs.map((b) => remote.echo(b)))) as Uint8Array[];
    rs.forEach((r, k) => expect(Buffer.compare(r, bs[k]!)).toBe(0));
  });
});
