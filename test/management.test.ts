/**
 * RpcClient: the management API of one server, every call against a real server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentCreationError, AgentServerNotAliveError, Msg, NotFoundError, PermissionDeniedError, RpcClient, connect } from "../src/index.ts";
import { getModelConfig } from "../src/models/store.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import type { Parrot, Tally } from "./fixtures/grpc-agents.ts";
import { rejection, startServer, type TestServer } from "./helpers/grpc.ts";

let server: TestServer;
let client: RpcClient;
let root: string;
let downloads: string;
const big = new Uint8Array(2.5 * 1024 * 1024).map((_, i) => (i * 7) & 255);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "as-mgmt-"));
  const files = join(root, "files");
  await mkdir(join(files, "nested"), { recursive: true });
  await writeFile(join(files, "hello.txt"), "hello world");
  await writeFile(join(files, "empty.txt"), "");
  await writeFile(join(files, "nested", "big.bin"), big);
  await writeFile(join(root, "secret.txt"), "outside");
  await symlink(join(root, "secret.txt"), join(files, "escape.txt"));
  downloads = join(root, "downloads");
  server = await startServer({ fileDir: files, capacity: 7 });
  client = new RpcClient(server.host, server.port, { downloadDir: downloads });
});

afterAll(async () => {
  await server.shutdown();
  await closeAllConnections();
  await rm(root, { recursive: true, force: true });
});

const id = (c: string) => c.repeat(32);

describe("RpcClient", () => {
  test("isAlive is true for a running server", async () => {
    expect(await client.isAlive()).toBe(true);
  });

  test("createAgent with a chosen id; the object is listed and callable", async () => {
    expect(await client.createAgent({ className: "Tally", args: [5, "made"] }, id("a"))).toBe(true);
    const list = await client.getAgentList();
    expect(list).toContainEqual({ id: id("a"), cls: "Tally" });
    const t = connect<Tally>({ ...server.conf, oid: id("a") });
    expect(await t.inc()).toBe(6);
    expect(await t.label).toBe("made");
  });

  test("createAgent without an id picks one", async () => {
    const before = (await client.getAgentList()).length;
    expect(await client.createAgent({ className: "Tally" })).toBe(true);
    expect((await client.getAgentList()).length).toBe(before + 1);
  });

  test("createAgent failures are AgentCreationError with the server's code", async () => {
    const unknown = await rejection(client.createAgent({ className: "NoSuchClass" }));
    expect(unknown).toBeInstanceOf(AgentCreationError);
    expect(unknown.code).toBe("NOT_FOUND");
    const threw = await rejection(client.createAgent({ className: "Grumpy", args: ["sad"] }));
    expect(threw).toBeInstanceOf(AgentCreationError);
    expect(threw.code).toBe("INVALID_ARGUMENT");
    const badId = await rejection(client.createAgent({ className: "Tally" }, "not an id/"));
    expect(badId.code).toBe("INVALID_ARGUMENT");
    await client.createAgent({ className: "Tally" }, id("b"));
    const taken = await rejection(client.createAgent({ className: "Tally" }, id("b")));
    expect(taken.code).toBe("ALREADY_EXISTS");
  });

  test("getAgentList describes agents (name, sysPrompt)", async () => {
    await client.createAgent({ className: "Parrot", args: ["polly", { sysPrompt: "squawk" }] }, id("c"));
    const e = (await client.getAgentList()).find((x) => x.id === id("c"));
    expect(e).toEqual({ id: id("c"), cls: "Parrot", name: "polly", sysPrompt: "squawk" });
  });

  test("getAgentMemory returns the agent's messages; NOT_FOUND for an unknown agent", async () => {
    const p = connect<Parrot>({ ...server.conf, oid: id("c") });
    await p.call(new Msg({ name: "user", content: "crackers" }));
    const mem = (await client.getAgentMemory(id("c"))) as Msg[];
    expect(mem.length).toBe(2);
    expect(mem[0]).toBeInstanceOf(Msg);
    expect(mem.map((m) => m.content)).toEqual(["crackers", "polly heard crackers"]);
    expect(await client.getAgentMemory(id("a"))).toBeNull();
    expect(await rejection(client.getAgentMemory(id("9")))).toBeInstanceOf(NotFoundError);
  });

  test("getServerInfo answers at once with pid, id, cpu, mem, size, capacity, pending", async () => {
    const info = await client.getServerInfo();
    expect(info.pid).toBe(process.pid);
    expect(info.id).toBe(server.serverId);
    expect(typeof info.cpu).toBe("number");
    expect(info.cpu).toBeGreaterThanOrEqual(0);
    expect(info.mem).toBeGreaterThan(0);
    expect(info.size).toBe((await client.getAgentList()).length);
    expect(info.capacity).toBe(7);
    expect(info.pending).toBe(0);
  });

  test("setModelConfigs adds configs on the server; bad ones and paths are refused", async () => {
    expect(await client.setModelConfigs({ config_name: "mgmt-test", model_type: "openai_chat", model_name: "m" })).toBe(true);
    // The server runs in this process, so its model store is ours.
    expect(getModelConfig("mgmt-test")?.model_name).toBe("m");
    expect(await client.setModelConfigs([{ config_name: "mgmt-2", model_type: "post_api_chat" }])).toBe(true);
    expect(getModelConfig("mgmt-2")).toBeDefined();
    const bad = await rejection(client.setModelConfigs({ model_type: "openai_chat" }));
    expect(bad.code).toBe("INVALID_ARGUMENT");
    // A string is JSON text from a peer, never a path the server would read.
    const path = await rejection(client.setModelConfigs("/etc/passwd"));
    expect(path.code).toBe("INVALID_ARGUMENT");
  });

  test("the built-in DialogAgent can be created on every server, with a config set remotely", async () => {
    await client.setModelConfigs({ config_name: "mgmt-dialog", model_type: "openai_chat", model_name: "m", client_args: { base_url: "http://127.0.0.1:9" } });
    const oid = id("d");
    expect(await client.createAgent({ className: "DialogAgent", args: ["dan", { modelConfigName: "mgmt-dialog", sysPrompt: "hi" }] }, oid)).toBe(true);
    const e = (await client.getAgentList()).find((x) => x.id === oid);
    expect(e?.cls).toBe("DialogAgent");
    expect(e?.model?.configName).toBe("mgmt-dialog");
    const bad = await rejection(client.createAgent({ className: "DialogAgent", args: ["x", { modelConfigName: "no-such-config" }] }));
    expect(bad).toBeInstanceOf(AgentCreationError);
    expect(bad.code).toBe("INVALID_ARGUMENT");
  });

  test("downloadFile saves a file from the file dir and returns its local path", async () => {
    const local = await client.downloadFile("hello.txt");
    expect(local.startsWith(downloads)).toBe(true);
    expect(local.endsWith("_hello.txt")).toBe(true);
    expect(await Bun.file(local).text()).toBe("hello world");
    const empty = await client.downloadFile("empty.txt");
    expect(await Bun.file(empty).text()).toBe("");
  });

  test("downloadFile streams a multi-chunk file intact", async () => {
    const local = await client.downloadFile("nested/big.bin");
    const got = new Uint8Array(await Bun.file(local).arrayBuffer());
    expect(got.byteLength).toBe(big.byteLength);
    expect(Buffer.compare(got, big)).toBe(0);
  });

  test("downloadFile is confined to the file dir: .., absolute paths and symlinks out are PERMISSION_DENIED", async () => {
    for (const p of ["../secret.txt", "nested/../../secret.txt", join(root, "secret.txt"), "escape.txt"]) {
      const e = await rejection(client.downloadFile(p));
      expect(e).toBeInstanceOf(PermissionDeniedError);
      expect(e.code).toBe("PERMISSION_DENIED");
    }
    expect((await rejection(client.downloadFile("missing.txt"))).code).toBe("NOT_FOUND");
  });

  test("a server without a file dir refuses every download", async () => {
    await using bare = await startServer();
    const e = await rejection(new RpcClient(bare.host, bare.port).downloadFile("hello.txt"));
    expect(e.code).toBe("PERMISSION_DENIED");
  });

  test("deleteAgent and deleteAllAgents", async () => {
    expect(await client.deleteAgent(id("a"))).toBe(true);
    expect((await client.getAgentList()).some((x) => x.id === id("a"))).toBe(false);
    expect(await client.deleteAgent(id("a"))).toBe(true); // idempotent
    expect(await client.deleteAllAgents()).toBe(true);
    expect(await client.getAgentList()).toEqual([]);
    expect((await client.getServerInfo()).size).toBe(0);
  });

  test("stop shuts the server down; then isAlive is false and stop answers false", async () => {
    const s = await startServer();
    const c = new RpcClient(s.host, s.port);
    expect(await c.stop()).toBe(true);
    await s.waitUntilTerminate();
    expect(await c.isAlive()).toBe(false);
    expect(await c.stop()).toBe(false);
  });

  test("close: later calls on that client fail FAILED_PRECONDITION saying it was closed, other clients are unaffected", async () => {
    const c = new RpcClient(server.host, server.port);
    c.close();
    for (const call of [() => c.isAlive(), () => c.getServerInfo(), () => c.createAgent({ className: "Tally" })]) {
      const e = await rejection(call());
      expect(e).not.toBeInstanceOf(AgentServerNotAliveError);
      expect(e.code).toBe("FAILED_PRECONDITION");
      expect(e.message).toContain("RpcClient was closed");
    }
    expect(await client.isAlive()).toBe(true);
  });
});
