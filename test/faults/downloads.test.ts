/**
 * Downloads over gRPC are streamed from disk: a download costs a chunk and a file handle, not
 * the file, whatever its client does; the number served at once is bounded; a client that
 * stops reading loses its slot; and confinement holds on the streamed path. Real server
 * processes, hostile clients in their own processes, server memory read from /proc.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { RpcClient } from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { agentServerService } from "../../src/wire/grpc-proto.ts";
import { DEFAULT_GRPC_BOUNDS } from "../../src/server/bindings/grpc/bounds.ts";
import { CHUNK_BYTES } from "../../src/server/bindings/grpc/download.ts";
import { DEFAULT_MAX_FILE_BYTES, readConfined } from "../../src/server/files.ts";
import { RawGrpc, subServer } from "../fixtures/fault-harness.ts";
import { rejection } from "../helpers/grpc.ts";
import { DOWNLOAD_PATH, attack, boundedServer, downloadRequestHex, peakRss, rssMiB, worstLatency } from "../helpers/attack.ts";

const MiB = 1024 * 1024;
let root: string;
let files: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "as-downloads-"));
  files = join(root, "files");
  await mkdir(join(files, "sub"), { recursive: true });
  await writeFile(join(files, "big.bin"), Buffer.alloc(30 * MiB, 7));
  await writeFile(join(files, "empty.txt"), "");
  await writeFile(join(files, "hello.txt"), "hello");
  await writeFile(join(root, "secret.txt"), "SECRET");
  await symlink(join(root, "secret.txt"), join(files, "escape.txt"));
  await writeFile(join(files, "%2e%2e"), "a file named %2e%2e");
  if (spawnSync("mkfifo", [join(files, "pipe")]).status !== 0) throw new Error("mkfifo failed");
});
afterAll(async () => {
  closeAllConnections();
  await rm(root, { recursive: true, force: true });
});

describe("downloads are streamed and bounded (default bounds)", () => {
  test("40 concurrent downloads of a 30 MiB file whose client never reads: server RSS grows < 200 MiB and isAlive answers < 1 s; with every slot held one more download is RESOURCE_EXHAUSTED at once, and the slots free when that client goes", async () => {
    await using srv = await subServer({ fileDir: files });
    const client = new RpcClient("127.0.0.1", srv.port, { downloadDir: join(root, "dl-a") });
    try {
      const before = rssMiB(srv.pid);
      const peak = peakRss(srv.pid);
      await using a = attack({ port: srv.port, path: DOWNLOAD_PATH, n: 40, mode: "noread", body: downloadRequestHex("big.bin"), holdMs: 60_000 });
      // Every stream has its answer headers: the server took all 40 in.
      const responded = a.stdout.waitFor(/^responses 40$/);
      const alive = await worstLatency(async () => expect(await client.isAlive()).toBe(true), responded);
      await responded;
      // Today: 70 → 1,319 MiB (each request read the whole file).
      const grown = peak.stop() - before;
      expect(grown).toBeLessThan(200);
      expect(alive.worstMs).toBeLessThan(1000);
      // The unread downloads hold every slot: one more is refused at once, not queued.
      const e = await rejection(client.downloadFile("big.bin"));
      expect(e.code).toBe("RESOURCE_EXHAUSTED");
      expect(e.message).toContain(`${DEFAULT_GRPC_BOUNDS.maxConcurrentDownloads} downloads`);
      // The attacker leaves: its slots are free again.
      a.proc.kill("SIGKILL");
      await a.proc.exited;
      let got: string | undefined;
      for (let i = 0; i < 50 && got === undefined; i++) {
        try {
          got = await client.downloadFile("big.bin");
        } catch (err) {
          expect((err as { code?: string }).code).toBe("RESOURCE_EXHAUSTED");
        }
      }
      expect(Bun.file(got!).size).toBe(30 * MiB);
    } finally {
      client.close();
    }
  });

  test("a file arrives intact in chunks of at most CHUNK_BYTES; an empty file is one empty chunk; a file at the bound is served and one byte over is RESOURCE_EXHAUSTED", async () => {
    const random = Buffer.from(crypto.getRandomValues(new Uint8Array(3 * MiB + 12345)));
    await writeFile(join(files, "random.bin"), random);
    await writeFile(join(files, "at-bound.bin"), Buffer.alloc(DEFAULT_MAX_FILE_BYTES, 1));
    await writeFile(join(files, "over-bound.bin"), Buffer.alloc(DEFAULT_MAX_FILE_BYTES + 1, 1));
    await using srv = await subServer({ fileDir: files });
    const raw = new RawGrpc("127.0.0.1", srv.port);
    const client = new RpcClient("127.0.0.1", srv.port, { downloadDir: join(root, "dl-b") });
    try {
      const body = (path: string) => new Uint8Array(agentServerService().Download!.requestSerialize({ path }));
      const replyOf = (b: Buffer) => agentServerService().Download!.responseDeserialize(b) as { value?: Uint8Array };
      const got = await raw.call("Download", body("random.bin"));
      expect(got.code).toBe(grpc.status.OK);
      const chunks = got.replies.map((r) => replyOf(r).value!);
      expect(chunks.length).toBe(Math.ceil(random.length / CHUNK_BYTES));
      expect(Math.max(...chunks.map((c) => c.byteLength))).toBeLessThanOrEqual(CHUNK_BYTES);
      const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
      expect(sha(Buffer.concat(chunks))).toBe(sha(random));
      const empty = await raw.call("Download", body("empty.txt"));
      expect(empty.replies.map((r) => replyOf(r).value?.byteLength)).toEqual([0]);
      expect(Bun.file(await client.downloadFile("at-bound.bin")).size).toBe(DEFAULT_MAX_FILE_BYTES);
      expect((await rejection(client.downloadFile("over-bound.bin"))).code).toBe("RESOURCE_EXHAUSTED");
    } finally {
      raw.close();
      client.close();
      await rm(join(files, "at-bound.bin"));
      await rm(join(files, "over-bound.bin"));
    }
  });

  test("confinement holds on the streamed path: `..`, `%2e%2e`, backslashes, NUL, a symlink out, a FIFO (refused at once, never waited on) and a 4,097-character name", async () => {
    await using srv = await subServer({ fileDir: files });
    const client = new RpcClient("127.0.0.1", srv.port, { downloadDir: join(root, "dl-c") });
    try {
      const code = async (p: string) => (await rejection(client.downloadFile(p))).code;
      expect(await code("../secret.txt")).toBe("PERMISSION_DENIED");
      expect(await code(join(root, "secret.txt"))).toBe("PERMISSION_DENIED");
      expect(await code("escape.txt")).toBe("PERMISSION_DENIED");
      expect(await code("sub/../../secret.txt")).toBe("PERMISSION_DENIED");
      // Names, not escapes: `%2e%2e` is a file of that name here, and `\` is no separator.
      expect(await Bun.file(await client.downloadFile("%2e%2e")).text()).toBe("a file named %2e%2e");
      expect(await code("%2e%2e/secret.txt")).toBe("NOT_FOUND");
      expect(await code("..\\secret.txt")).toBe("NOT_FOUND");
      expect(await code("a\0b")).toBe("PERMISSION_DENIED");
      const t = performance.now();
      expect(await code("pipe")).toBe("NOT_FOUND");
      expect(performance.now() - t).toBeLessThan(2000);
      // A path is at most 4,096 characters (then INVALID_ARGUMENT before any file system call).
      expect(await code("a".repeat(4097))).toBe("INVALID_ARGUMENT");
      expect(await code("a".repeat(4096))).toBe("NOT_FOUND");
      expect(await code("sub")).toBe("NOT_FOUND");
      // And the server is unharmed.
      expect(await Bun.file(await client.downloadFile("hello.txt")).text()).toBe("hello");
    } finally {
      client.close();
    }
  });
});

describe("a client that stops reading (fixture server with small bounds)", () => {
  test("loses its download after downloadStallMs: its stream is reset and its slot serves the next client", async () => {
    await using srv = await boundedServer({ fileDir: files, bounds: { maxConcurrentDownloads: 2, downloadStallMs: 1000 } });
    const client = new RpcClient("127.0.0.1", srv.port, { downloadDir: join(root, "dl-d") });
    try {
      await using a = attack({ port: srv.port, path: DOWNLOAD_PATH, n: 2, mode: "noread", body: downloadRequestHex("big.bin"), holdMs: 15_000 });
      await a.stdout.waitFor(/^responses 2$/);
      expect((await rejection(client.downloadFile("hello.txt"))).code).toBe("RESOURCE_EXHAUSTED");
      const { ends } = await a.report();
      for (const e of ends) {
        expect(e.held).toBeUndefined();
        expect(e.rst).toBe(8); // CANCEL
        expect(e.closedAt!).toBeGreaterThanOrEqual(900);
        expect(e.closedAt!).toBeLessThan(10_000);
      }
      expect(await Bun.file(await client.downloadFile("hello.txt")).text()).toBe("hello");
    } finally {
      client.close();
    }
  });
});

describe("readConfined (the IPC path: one message carries the whole file)", () => {
  test("reads a file at its bound and refuses one byte over, before reading it", async () => {
    expect((await readConfined(files, "hello.txt", 5)).byteLength).toBe(5);
    expect((await rejection(readConfined(files, "hello.txt", 4))).code).toBe("RESOURCE_EXHAUSTED");
    expect((await rejection(readConfined(undefined, "hello.txt"))).code).toBe("PERMISSION_DENIED");
    expect((await rejection(readConfined(files, "pipe"))).code).toBe("NOT_FOUND");
  });
});
