/**
 * Security of independent servers, against real subprocesses (scenarios S1–S3, S6, S8):
 * tokens, loopback by default, confined downloads, and remote stacks that can be hidden.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { AgentCallError, PermissionDeniedError, RpcClient, UnauthenticatedError, connect } from "../../src/index.ts";
import { encodeValue } from "../../src/core/codec.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { randomId } from "../../src/core/ids.ts";
import { agentServerService } from "../../src/wire/grpc-proto.ts";
import { UNAUTHENTICATED_MESSAGE } from "../../src/server/bindings/grpc/binding.ts";
import { RawGrpc, cliServer, subServer } from "../fixtures/fault-harness.ts";
import { Sturdy } from "../fixtures/fault-server/agents.ts";
import { rejection } from "../helpers/grpc.ts";
import { SOURCE_CLI, runCli, type RunningServer } from "../helpers/cli.ts";

afterAll(() => closeAllConnections());

/** A non-loopback IPv4 address of this machine, if it has one. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === "IPv4" && !i.internal)?.address;

/** Does a TCP connection to `host:port` open? */
async function reachable(host: string, port: number): Promise<boolean> {
  try {
    const sock = await Bun.connect({ hostname: host, port, socket: { data() {} } });
    sock.end();
    return true;
  } catch {
    return false;
  }
}

describe("token (S1, S2, S8)", () => {
  const token = `tok-${crypto.randomUUID()}`;
  let srv: RunningServer;
  let raw: RawGrpc;
  /** The right token, on the host name the tests use for authorized calls. */
  let good: RpcClient;

  beforeAll(async () => {
    // --token on the command line here (AS_SERVER_TOKEN is covered by cli.test.ts and the launcher tests).
    srv = await cliServer(["--hide-stacks", "--token", token]);
    raw = new RawGrpc("127.0.0.1", srv.port);
    good = new RpcClient("localhost", srv.port, { token });
  });
  afterAll(async () => {
    raw.close();
    await srv[Symbol.asyncDispose]();
  });

  const svc = agentServerService();
  const body = (rpc: string, msg: object) => new Uint8Array(svc[rpc]!.requestSerialize(msg));

  test("wrong, missing and malformed tokens: UNAUTHENTICATED with one generic message, for every RPC, and nothing runs", async () => {
    const w = Sturdy.toDist({ host: "localhost", port: srv.port, token });
    expect(await w.ping()).toBe("pong");
    const agentsBefore = await good.getAgentList();
    const callsBefore = await w.calls;
    const bad: Array<Record<string, string>> = [
      {},
      { authorization: "Bearer wrong" },
      { authorization: "Bearer " },
      { authorization: "Bearer" },
      { authorization: token },
      { authorization: `Basic ${btoa(`user:${token}`)}` },
      { authorization: `Bearer ${token}x` },
      { authorization: `Bearer ${token.slice(0, -1)}` },
      { authorization: `Bearer ${token} ` },
      { "x-as-token": "" },
      { "x-as-token": `${token.toUpperCase()}` },
      { authorization: `Bearer ${"x".repeat(4000)}` },
      { "x-token": token },
    ];
    const attempts: Array<[string, Uint8Array]> = [
      ["Create", body("Create", { oid: randomId(), cls: "Sturdy", args: encodeValue([]) })],
      ["Call", body("Call", { oid: w.oid, name: "count", args: encodeValue([]) })],
      ["List", body("List", {})],
      ["Info", body("Info", {})],
      ["Alive", body("Alive", {})],
      ["DeleteAll", body("DeleteAll", {})],
      ["Delete", body("Delete", { oid: w.oid })],
      ["Stop", body("Stop", {})],
      ["Download", body("Download", { path: "x" })],
      ["SetModelConfigs", body("SetModelConfigs", { configs: encodeValue({ config_name: "c", model_type: "openai_chat" }) })],
    ];
    for (const md of bad) {
      for (const [rpc, b] of attempts) {
        const r = await raw.call(rpc, b, md);
        expect({ rpc, md, code: r.code, details: r.details }).toEqual({ rpc, md, code: 16, details: UNAUTHENTICATED_MESSAGE });
        expect(r.replies).toEqual([]);
      }
    }
    // Nothing was created, called, deleted or stopped.
    expect(await good.getAgentList()).toEqual(agentsBefore);
    expect(await w.calls).toBe(callsBefore);
    expect(await w.ping()).toBe("pong");
  });

  test("through the library: a missing or wrong token is UnauthenticatedError, nothing is created; the right one works from DistConf, RpcClient, connect() and the environment", async () => {
    const before = (await good.getAgentList()).length;
    // 127.0.0.1 is another server to the token table than localhost: no token there yet.
    const missing = await rejection(Sturdy.toDist({ host: "127.0.0.1", port: srv.port }).ping());
    expect(missing).toBeInstanceOf(UnauthenticatedError);
    expect(missing.message).toBe(UNAUTHENTICATED_MESSAGE);
    // With no token of its own for 127.0.0.1, a client takes the environment's.
    const saved = process.env.AS_CLIENT_TOKEN;
    process.env.AS_CLIENT_TOKEN = token;
    try {
      expect(await new RpcClient("127.0.0.1", srv.port).isAlive()).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.AS_CLIENT_TOKEN;
      else process.env.AS_CLIENT_TOKEN = saved;
    }
    const wrong = new RpcClient("127.0.0.1", srv.port, { token: "not-it" });
    for (const op of [() => wrong.isAlive(), () => wrong.createAgent({ className: "Sturdy" }), () => wrong.getServerInfo(), () => wrong.stop(), () => wrong.downloadFile("x")]) {
      const e = await rejection(op());
      expect(e).toBeInstanceOf(UnauthenticatedError);
      expect(e.message).toBe(UNAUTHENTICATED_MESSAGE);
      expect(e.message).not.toContain("not-it");
    }
    expect((await good.getAgentList()).length).toBe(before);
    // The right token: DistConf, RpcClient, connect(), and the environment.
    const viaConf = Sturdy.toDist({ host: "localhost", port: srv.port, token });
    expect(await viaConf.count()).toBe(1);
    expect(await good.isAlive()).toBe(true);
    expect(await connect<Sturdy>({ host: "localhost", port: srv.port, oid: viaConf.oid, token }).count()).toBe(2);
    expect((await good.getAgentList()).length).toBe(before + 1);
  });

  test("the token never reaches the server's output or the CLI's", async () => {
    const st = await runCli(SOURCE_CLI, ["status", "--port", String(srv.port), "--token", "wrong-guess-123"]);
    expect(st.code).toBe(1);
    const ok = await runCli(SOURCE_CLI, ["status", "--port", String(srv.port)], { env: { AS_SERVER_TOKEN: token } });
    expect(ok.code).toBe(0);
    for (const out of [srv.stdout.text, srv.stderr.text, st.stdout, st.stderr, ok.stdout, ok.stderr]) {
      expect(out).not.toContain(token);
      expect(out).not.toContain("wrong-guess-123");
    }
  });

  test("--hide-stacks: remote errors carry name and message, no stack", async () => {
    const w = Sturdy.toDist({ host: "localhost", port: srv.port, token });
    for (const call of [() => w.fail("no stack please"), () => w.failAsync("nor here")]) {
      const e = (await rejection(call())) as unknown as AgentCallError;
      expect(e).toBeInstanceOf(AgentCallError);
      expect(e.remote.message).toMatch(/no stack please|nor here/);
      expect(e.remote.stack).toBeUndefined();
      expect(e.stack).not.toContain("--- remote stack ---");
      expect(e.stack).not.toContain("fault-server");
    }
  });

  test("loopback by default: the CLI server is not reachable on a non-loopback address", async () => {
    expect(await reachable("127.0.0.1", srv.port)).toBe(true);
    if (external) expect(await reachable(external, srv.port)).toBe(false);
  });
});

describe("a server with no token", () => {
  test("a client that sends a token anyway is served (S2); stacks are present by default; the launcher listens on loopback only", async () => {
    await using s = await subServer();
    const w = Sturdy.toDist({ ...s.conf, token: "unneeded" });
    expect(await w.ping()).toBe("pong");
    expect(await new RpcClient(s.host, s.port, { token: "unneeded" }).isAlive()).toBe(true);
    const e = (await rejection(w.fail("with stack"))) as unknown as AgentCallError;
    expect(e).toBeInstanceOf(AgentCallError);
    expect(e.remote.stack).toContain("fail");
    expect(e.stack).toContain("--- remote stack ---");
    const ea = (await rejection(w.failAsync("async stack"))) as unknown as AgentCallError;
    expect(ea.remote.name).toBe("RangeError");
    expect(ea.remote.stack).toContain("fault-server/agents.ts");
    if (external) expect(await reachable(external, s.port)).toBe(false);
  });

  test("the launcher's hideStacks leaves stacks out; its token (passed through the environment) guards it", async () => {
    await using s = await subServer({ hideStacks: true, token: "launcher-secret" }, { token: "launcher-secret" });
    expect((await rejection(new RpcClient("127.0.0.1", s.port).isAlive())).code).toBe("UNAUTHENTICATED");
    const w = Sturdy.toDist({ ...s.conf, token: "launcher-secret" });
    const e = (await rejection(w.fail("hidden"))) as unknown as AgentCallError;
    expect(e.remote).toEqual({ name: "TypeError", message: "hidden" });
  });

  test("a non-loopback listener: refused without a token (CLI exit 2, launcher throws); with --insecure it starts, warns loudly, and is reachable", async () => {
    const refused = await runCli(SOURCE_CLI, ["start", "--host", "0.0.0.0", "--port", "0"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/refusing to listen on non-loopback 0\.0\.0\.0 without a token/);
    const { RpcAgentServerLauncher } = await import("../../src/index.ts");
    expect(() => new RpcAgentServerLauncher({ host: "0.0.0.0", port: 0 })).toThrow(/refusing to listen on non-loopback/);
    await using open = await cliServer(["--host", "0.0.0.0", "--insecure"]);
    expect(open.stdout.text + open.stderr.text).toMatch(/--insecure: listening on 0\.0\.0\.0 with no token/);
    if (external) {
      expect(await reachable(external, open.port)).toBe(true);
      expect(await new RpcClient(external, open.port).isAlive()).toBe(true);
    }
  });
});

describe("downloads are confined to the file dir (S6)", () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "as-sec-files-"));
    const files = join(root, "files");
    await mkdir(join(files, "nested", "deeper"), { recursive: true });
    await mkdir(join(root, "outside"), { recursive: true });
    await writeFile(join(files, "hello.txt"), "hello");
    await writeFile(join(files, "nested", "deeper", "n.txt"), "nested");
    await writeFile(join(root, "secret.txt"), "SECRET");
    await writeFile(join(root, "outside", "secret2.txt"), "SECRET2");
    await symlink(join(root, "secret.txt"), join(files, "escape.txt"));
    await symlink(join(root, "outside"), join(files, "linkout"));
    await symlink(join(files, "nested", "deeper"), join(files, "linkin"));
    await symlink(join(files, "hello.txt"), join(files, "alias.txt"));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  test("`..`, absolute paths, symlinks (to files and dirs) out, and `..` inside a symlinked dir never read outside", async () => {
    const files = join(root, "files");
    await using s = await subServer({ fileDir: files });
    const client = new RpcClient(s.host, s.port, { downloadDir: join(root, "dl") });
    const text = async (p: string) => Bun.file(await client.downloadFile(p)).text();
    // Inside: plain, nested, through a symlink that stays inside, and an absolute path inside.
    expect(await text("hello.txt")).toBe("hello");
    expect(await text("nested/deeper/n.txt")).toBe("nested");
    expect(await text("linkin/n.txt")).toBe("nested");
    expect(await text("alias.txt")).toBe("hello");
    expect(await text(join(files, "hello.txt"))).toBe("hello");
    expect(await text("nested/../hello.txt")).toBe("hello");
    // Outside, however spelled: PERMISSION_DENIED.
    for (const p of ["../secret.txt", "nested/../../secret.txt", "./../secret.txt", join(root, "secret.txt"), "/etc/passwd", "escape.txt", "linkout/secret2.txt", "linkin/../../../secret.txt", `${files}/../secret.txt`]) {
      const e = await rejection(client.downloadFile(p));
      expect({ p, code: e.code }).toEqual({ p, code: "PERMISSION_DENIED" });
      expect(e).toBeInstanceOf(PermissionDeniedError);
    }
    // `..` after a symlinked dir is resolved by name, inside the file dir: the kernel would have
    // gone to root/secret.txt through the link; here it is files/secret.txt, which does not exist.
    for (const p of ["linkout/../secret.txt", "linkout/../linkout/../secret.txt"]) {
      const e = await rejection(client.downloadFile(p));
      expect({ p, code: e.code }).toEqual({ p, code: "NOT_FOUND" });
    }
    // Not files, or not paths at all.
    for (const p of ["nested", "", "a\0b", "missing.txt"]) {
      const e = await rejection(client.downloadFile(p));
      expect(["NOT_FOUND", "PERMISSION_DENIED", "INVALID_ARGUMENT"]).toContain(e.code!);
    }
  });
});
