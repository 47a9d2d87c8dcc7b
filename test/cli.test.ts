/**
 * The `as-server` CLI, run as real processes: from source (`bun bin/as-server.ts`) and as the
 * compiled binary (built once, into a temp dir, by scripts/build.ts). Scenarios C1–C3 and S3
 * of the reliability list; DESIGN §4 for exit codes (bad input → 2, one line on stderr).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import pkg from "../package.json" with { type: "json" };
import { AgentBase, Msg, dist } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { RpcClient } from "../src/client/rpc-client.ts";
import { checkArgv } from "../bin/args.ts";
import { startArgs, startOptions, startRules } from "../bin/commands/start-args.ts";
import { makeTestCerts } from "./fixtures/certs.ts";
import { startEnv } from "./helpers/children.ts";
import { LISTENING, REPO, SOURCE_CLI, runCli, startServer } from "./helpers/cli.ts";

/** Client-side twin of the agent the server loads from its --agent-dir: only the name and method list matter. */
@dist
class Greeter extends AgentBase {
  greet(_who: string): string {
    throw new Error("runs on the server only");
  }
  isMsg(_m: unknown): boolean {
    throw new Error("runs on the server only");
  }
}

/** Client-side twin of an agent that moves a helper object into a child server of its own. */
@dist
class Boss extends AgentBase {
  async delegate(_x: number): Promise<[number, number, number]> {
    throw new Error("runs on the server only");
  }
  envVar(_name: string): string | undefined {
    throw new Error("runs on the server only");
  }
}


const scratch = mkdtempSync(join(tmpdir(), "as-cli-test-"));
afterAll(async () => {
  await closeAllConnections();
  rmSync(scratch, { recursive: true, force: true });
});

/** An agent dir whose file imports "actorscope", a sibling module and (optionally) a package of its own. */
function writeAgentDir(dir: string, opts: { ownPackage: boolean }): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "helper.ts"), `export const greeting = (me: string, who: string): string => \`\${me} greets \${who}\`;\n`);
  const pkgImport = opts.ownPackage ? `import { shout } from "tiny-pkg";\n` : `const shout = (s: string): string => s;\n`;
  writeFileSync(
    join(dir, "greeter.ts"),
    `import { AgentBase, dist, Msg } from "actorscope";
import { greeting } from "./helper.ts";
${pkgImport}
@dist
export class Greeter extends AgentBase {
  greet(who: string): string { return shout(greeting(this.name, who)); }
  isMsg(m: unknown): boolean { return m instanceof Msg; }
}
`,
  );
  writeFileSync(
    join(dir, "boss.ts"),
    `import { AgentBase, Distributable, dist } from "actorscope";
@dist
export class Worker extends Distributable {
  double(x: number): number { return x * 2; }
  pid(): number { return process.pid; }
}
@dist
export class Boss extends AgentBase {
  /** The server's own process.env[name]. */
  envVar(name: string): string | undefined { return process.env[name]; }
  /** [2x, the child's pid, the server's pid]: Worker runs in a child server spawned for it. */
  async delegate(x: number): Promise<[number, number, number]> {
    await using w = new Worker().toDist();
    return [await w.double(x), await w.pid(), process.pid];
  }
}
`,
  );
  if (opts.ownPackage) {
    // Resolved through its package.json "exports": needs --compile-autoload-package-json.
    const p = join(dir, "node_modules", "tiny-pkg");
    mkdirSync(join(p, "dist"), { recursive: true });
    writeFileSync(join(p, "package.json"), JSON.stringify({ name: "tiny-pkg", type: "module", exports: { ".": "./dist/index.js" } }));
    writeFileSync(join(p, "dist", "index.js"), `export const shout = (s) => s.toUpperCase() + "!";\n`);
  }
  return join(dir, "greeter.ts");
}

/** Bad input: each must exit 2 with exactly one line on stderr (DESIGN §4). */
const BAD_INPUT: [string, string[], RegExp][] = [
  ["an unknown flag", ["start", "--bogus"], /unknown option --bogus/],
  ["a non-numeric port", ["start", "--port", "abc"], /--port/],
  ["an out-of-range port", ["start", "--port", "70000"], /--port/],
  ["a negative port", ["start", "--port", "-1"], /--port/],
  ["a negative capacity", ["start", "--capacity", "-3"], /--capacity/],
  ["a zero capacity", ["start", "--capacity", "0"], /--capacity/],
  ["an unknown pool type", ["start", "--pool-type", "memcached"], /--pool-type/],
  ["a missing agent dir", ["start", "--agent-dir", "/nonexistent/agents"], /--agent-dir/],
  ["a missing model config file", ["start", "--model-config-path", "/nonexistent/models.json"], /--model-config-path/],
  ["a non-boolean --local-mode", ["start", "--local-mode", "maybe"], /--local-mode/],
  ["a flag without its value", ["start", "--port"], /--port needs a value/],
  ["a non-loopback host without a token", ["start", "--host", "0.0.0.0"], /token/],
  ["--local-mode false on a public host without a token", ["start", "--host", "10.1.2.3", "--local-mode", "false"], /token/],
  ["a zero --max-message-bytes", ["start", "--max-message-bytes", "0"], /--max-message-bytes/],
  ["--insecure=maybe", ["start", "--insecure=maybe"], /--insecure/],
  ["--insecure=0 on a public host without a token", ["start", "--host", "10.1.2.3", "--insecure=0"], /token/],
  ["an unknown command", ["launch"], /unknown command "launch"/],
  ["no command", [], /missing command/],
  ["a bad port for stop", ["stop", "--port", "x"], /--port/],
  ["a stray argument to status", ["status", "extra"], /unexpected argument "extra"/],
  ["a flag given twice", ["start", "--port", "1", "--port", "2"], /option --port given more than once/],
  ["a flag given twice in two spellings", ["start", "--agent-dir", "a", "--agentDir=b"], /option --agent-dir given more than once/],
  ["a boolean and its negation", ["start", "--insecure", "--no-insecure"], /option --insecure given more than once/],
  ["a client flag given twice", ["status", "--host", "a", "--host", "b"], /option --host given more than once/],
  ["--tls-cert without --tls-key for status", ["status", "--tls-cert", "/dev/null"], /--tls-cert .*is not a file|--tls-cert and --tls-key go together/],
];

describe("as-server from source", () => {
  test("--help prints the commands (not __child) and exits 0", async () => {
    const r = await runCli(SOURCE_CLI, ["--help"]);
    expect(r.code).toBe(0);
    for (const c of ["start", "stop", "status"]) expect(r.stdout).toContain(c);
    expect(r.stdout).not.toContain("__child");
  });

  test("start --help lists every DESIGN flag and exits 0", async () => {
    const r = await runCli(SOURCE_CLI, ["start", "--help"]);
    expect(r.code).toBe(0);
    const flags = "host port capacity pool-type redis-url max-pool-size max-expire-time max-timeout-seconds local-mode agent-dir model-config-path server-id studio-url token insecure";
    for (const f of flags.split(" ")) expect(r.stdout).toContain(`--${f}`);
  });

  test("--version prints the package version and exits 0", async () => {
    const r = await runCli(SOURCE_CLI, ["--version"]);
    expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  test.each(BAD_INPUT)("rejects %s: one line on stderr, exit 2", async (_what, args, re) => {
    const r = await runCli(SOURCE_CLI, args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(re);
  });

  test("start --port 0, status, stop: one listening line, No agents, the server exits 0", async () => {
    await using srv = await startServer(SOURCE_CLI, ["--port", "0"]);
    expect(srv.port).toBeGreaterThan(0);
    expect(srv.stdout.lines.filter((l) => l.includes("listening on"))).toHaveLength(1);
    const st = await runCli(SOURCE_CLI, ["status", "--port", String(srv.port)]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain(srv.serverId);
    expect(st.stdout).toContain("No agents");
    const sp = await runCli(SOURCE_CLI, ["stop", "--port", String(srv.port)]);
    expect(sp.code).toBe(0);
    expect(await srv.proc.exited).toBe(0);
  });

  test("start runs itself again, in place, under a server's allocator settings (same pid, MIMALLOC_PURGE_DELAY=-1 at start)", async () => {
    await using srv = await startServer(SOURCE_CLI, ["--port", "0"]);
    expect(startEnv(srv.proc.pid)).toContain("MIMALLOC_PURGE_DELAY=-1");
    expect(await srv.stop("SIGTERM")).toBe(0);
  });

  test.each(["SIGTERM", "SIGINT"] as const)("%s drains and exits 0", async (sig) => {
    await using srv = await startServer(SOURCE_CLI, ["--port", "0"]);
    expect(await srv.stop(sig)).toBe(0);
  });

  test("a port already in use is a clear error and a non-zero exit", async () => {
    await using first = await startServer(SOURCE_CLI, ["--port", "0", "--host", "127.0.0.1"]);
    const r = await runCli(SOURCE_CLI, ["start", "--host", "127.0.0.1", "--port", String(first.port)]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already in use/);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  test("stop and status of a server that is not there: one line, exit 1", async () => {
    await using srv = await startServer(SOURCE_CLI, ["--port", "0"]);
    const port = String(srv.port);
    expect(await srv.stop()).toBe(0);
    for (const cmd of ["status", "stop"]) {
      const r = await runCli(SOURCE_CLI, [cmd, "--port", port]);
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split("\n")).toEqual([expect.stringMatching(/no agent server is alive at localhost:\d+/)]);
    }
  });

  test("a token from AS_SERVER_TOKEN guards the server and is never printed", async () => {
    const token = `tok-${crypto.randomUUID()}`;
    await using srv = await startServer(SOURCE_CLI, ["--port", "0", "--host", "0.0.0.0", "--local-mode", "no"], { env: { AS_SERVER_TOKEN: token } });
    const port = String(srv.port);
    const without = await runCli(SOURCE_CLI, ["status", "--port", port]);
    expect(without.code).toBe(1);
    const withToken = await runCli(SOURCE_CLI, ["status", "--port", port, "--json"], { env: { AS_SERVER_TOKEN: token } });
    expect(withToken.code).toBe(0);
    expect(JSON.parse(withToken.stdout)).toMatchObject({ server: { id: srv.serverId }, agents: [] });
    const stopped = await runCli(SOURCE_CLI, ["stop", "--port", port, "--token", token]);
    expect(stopped.code).toBe(0);
    expect(await srv.proc.exited).toBe(0);
    for (const out of [srv.stdout.text, srv.stderr.text, without.stderr, withToken.stderr, stopped.stdout, stopped.stderr]) {
      expect(out).not.toContain(token);
    }
  });

  test("--agent-dir loads classes that import the installed package, and clients create them by name", async () => {
    const dir = join(scratch, "src-agents");
    writeAgentDir(dir, { ownPackage: false });
    // The user's project has actorscope installed: here, a link to this repository.
    mkdirSync(join(dir, "node_modules"), { recursive: true });
    symlinkSync(REPO, join(dir, "node_modules", "actorscope"), "dir");
    await using srv = await startServer(SOURCE_CLI, ["--port", "0", "--agent-dir", dir]);
    await using g = Greeter.toDist({ host: srv.host, port: srv.port }, "ann");
    expect(await g.greet("bob")).toBe("ann greets bob");
    expect(await g.isMsg(new Msg({ name: "t", content: 1 }))).toBe(true);
    await using boss = Boss.toDist({ host: srv.host, port: srv.port }, "boss");
    const [doubled, childPid, serverPid] = await boss.delegate(21);
    expect(doubled).toBe(42);
    expect(serverPid).toBe(srv.proc.pid);
    expect(childPid).not.toBe(serverPid);
  });
});

describe("as-server speaks plainly", () => {
  test("no colour codes when stdout/stderr are pipes, even without NO_COLOR: help, errors, the listening line", async () => {
    const env = { NO_COLOR: undefined, FORCE_COLOR: undefined };
    const runs = await Promise.all([
      runCli(SOURCE_CLI, ["--help"], { env }),
      runCli(SOURCE_CLI, ["start", "--help"], { env }),
      runCli(SOURCE_CLI, ["start", "--port", "x"], { env }),
      runCli(SOURCE_CLI, ["status", "--port", "1"], { env }),
    ]);
    await using srv = await startServer(SOURCE_CLI, ["--port", "0"], { env });
    const texts = [...runs.flatMap((r) => [r.stdout, r.stderr]), srv.stdout.text, srv.stderr.text];
    expect(texts.join("").length).toBeGreaterThan(500);
    for (const t of texts) expect(t).not.toContain("\x1b[");
  });

  test.each(["start", "stop", "status"])("%s --help: usage, left-aligned options, examples, no trailing spaces", async (cmd) => {
    const r = await runCli(SOURCE_CLI, [cmd, "--help"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toContain("Examples:");
    expect(lines.some((l) => l.startsWith(`  as-server ${cmd} `))).toBe(true);
    const options = lines.slice(lines.indexOf("Options:") + 1, lines.indexOf("", lines.indexOf("Options:")));
    expect(options.length).toBeGreaterThan(3);
    // Left-aligned: every option line starts with its flag right after two spaces (citty right-aligned them).
    for (const l of options) expect(l).toMatch(/^ {2}--[a-z]/);
    for (const l of lines) expect(l).toBe(l.trimEnd());
  });

  test("--help of the root lists the commands with one example each", async () => {
    const r = await runCli(SOURCE_CLI, ["--help"]);
    expect(r.code).toBe(0);
    for (const c of ["start", "stop", "status"]) expect(r.stdout).toMatch(new RegExp(`^  as-server ${c} `, "m"));
  });

  test("--host 127.0.0.2 binds 127.0.0.2, and the listening line says so", async () => {
    await using srv = await startServer(SOURCE_CLI, ["--host", "127.0.0.2", "--port", "0"]);
    expect(srv.host).toBe("127.0.0.2");
    expect(srv.stdout.lines.filter((l) => LISTENING.test(l))).toEqual([expect.stringMatching(/as-server listening on 127\.0\.0\.2:\d+ \(server id \S+\)$/)]);
    const there = await runCli(SOURCE_CLI, ["status", "--host", "127.0.0.2", "--port", String(srv.port)]);
    expect(there.code).toBe(0);
    // Nothing listens on 127.0.0.1 at that port: the server bound only what it was asked.
    const elsewhere = await runCli(SOURCE_CLI, ["status", "--host", "127.0.0.1", "--port", String(srv.port)]);
    expect(elsewhere.code).toBe(1);
  });

  test("status and stop reach a TLS server with --tls-ca (and fail without it)", async () => {
    const certs = makeTestCerts();
    try {
      await using srv = await startServer(SOURCE_CLI, ["--port", "0", "--tls-cert", certs.serverCert, "--tls-key", certs.serverKey]);
      const port = String(srv.port);
      const plain = await runCli(SOURCE_CLI, ["status", "--port", port], { env: { AS_TLS_CA: undefined } });
      expect(plain.code).toBe(1);
      const st = await runCli(SOURCE_CLI, ["status", "--port", port, "--tls-ca", certs.ca, "--json"], { env: { AS_TLS_CA: undefined } });
      expect(st.code).toBe(0);
      expect(JSON.parse(st.stdout).server.id).toBe(srv.serverId);
      const sp = await runCli(SOURCE_CLI, ["stop", "--port", port, "--tls-ca", certs.ca], { env: { AS_TLS_CA: undefined } });
      expect(sp.code).toBe(0);
      expect(await srv.proc.exited).toBe(0);
    } finally {
      certs.remove();
    }
  });
});

describe("checkArgv", () => {
  test("a bare --local-mode means true; a value starting with a single dash is a value", () => {
    expect(checkArgv(["--local-mode", "--port", "-1"], startArgs, startRules)).toEqual(["--local-mode=true", "--port", "-1"]);
  });

  test("boolean values are normalised for citty, which reads any value but \"false\" as true", () => {
    expect(checkArgv(["--insecure=0", "--hide-stacks=yes"], startArgs, startRules)).toEqual(["--no-insecure", "--hide-stacks"]);
  });

  test("camelCase spellings are accepted, like citty does", () => {
    expect(checkArgv(["--agentDir", "x"], startArgs, startRules)).toEqual(["--agentDir", "x"]);
  });
});

describe("startOptions", () => {
  const base = { host: "localhost", port: "0", capacity: "32", "pool-type": "local", "redis-url": "redis://localhost:6379", "max-pool-size": "8192", "max-expire-time": "7200", "max-timeout-seconds": "5" };
  test.each([
    ["true", true], ["false", false], ["1", true], ["0", false], ["yes", true], ["no", false], ["YES", true], ["off", false],
  ] as const)("--local-mode %s means %p", (v, want) => {
    expect(startOptions({ ...base, "local-mode": v }, { AS_SERVER_TOKEN: "t" }).localMode).toBe(want);
  });

  test("--local-mode defaults to true on a loopback host and to false on any other", () => {
    expect(startOptions(base, {}).localMode).toBe(true);
    expect(startOptions({ ...base, host: "0.0.0.0" }, { AS_SERVER_TOKEN: "t" }).localMode).toBe(false);
    expect(startOptions({ ...base, host: "0.0.0.0", "local-mode": "true" }, {}).localMode).toBe(true);
  });

  test("the token comes from --token, else AS_SERVER_TOKEN", () => {
    expect(startOptions(base, { AS_SERVER_TOKEN: "env" }).token).toBe("env");
    expect(startOptions({ ...base, token: "flag" }, { AS_SERVER_TOKEN: "env" }).token).toBe("flag");
    expect(startOptions(base, {}).token).toBeUndefined();
  });
});

describe("compiled as-server", () => {
  let bin = process.env.AS_SERVER_BIN ?? "";
  /** Where the binary runs: a directory with no node_modules and no package.json. */
  const bare = join(scratch, "bare");
  const agents = join(scratch, "bin-agents");
  let agentFile = "";

  beforeAll(async () => {
    mkdirSync(bare, { recursive: true });
    agentFile = writeAgentDir(agents, { ownPackage: true });
    if (!bin) {
      bin = join(scratch, "as-server");
      const r = await runCli([process.execPath, join(REPO, "scripts/build.ts")], ["--outfile", bin], { timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
  }, 130_000);

  test("--version runs from a directory without node_modules", async () => {
    const r = await runCli([bin], ["--version"], { cwd: bare });
    expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  test("bad input exits 2 with one line", async () => {
    const r = await runCli([bin], ["start", "--capacity", "-1"], { cwd: bare });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  test("start --agent-dir: the user's file gets the binary's classes, its sibling and its own package; status; stop", async () => {
    await using srv = await startServer([bin], ["--port", "0", "--agent-dir", agents], { cwd: bare });
    // Not `await using`: the server is stopped below, after which there is nothing to delete.
    const g = Greeter.toDist({ host: srv.host, port: srv.port }, "ann");
    expect(await g.greet("bob")).toBe("ANN GREETS BOB!");
    // The server decoded the Msg with its own class, and the agent file's "actorscope" is that same module.
    expect(await g.isMsg(new Msg({ name: "t", content: 1 }))).toBe(true);
    const client = new RpcClient(srv.host, srv.port);
    try {
      expect((await client.getAgentList()).map((a) => a.cls)).toEqual(["Greeter"]);
    } finally {
      client.close();
    }
    const st = await runCli([bin], ["status", "--port", String(srv.port)], { cwd: bare });
    expect(st.code).toBe(0);
    expect(st.stdout).toContain("Greeter");
    await g.delete();
    const sp = await runCli([bin], ["stop", "--port", String(srv.port)], { cwd: bare });
    expect(sp.code).toBe(0);
    expect(await srv.proc.exited).toBe(0);
  });

  test("an agent in the binary's server moves an object to a child server: the binary spawns itself", async () => {
    await using srv = await startServer([bin], ["--port", "0", "--agent-dir", agents], { cwd: bare });
    await using boss = Boss.toDist({ host: srv.host, port: srv.port }, "boss");
    const [doubled, childPid, serverPid] = await boss.delegate(21);
    expect(doubled).toBe(42);
    expect(serverPid).toBe(srv.proc.pid);
    expect(childPid).not.toBe(serverPid);
  });

  test("start runs itself again, in place, under a server's allocator settings: same pid, MIMALLOC_PURGE_DELAY=-1 at start, not in the agents' process.env", async () => {
    await using srv = await startServer([bin], ["--port", "0", "--agent-dir", agents], { cwd: bare });
    const env = startEnv(srv.proc.pid);
    expect(env).toContain("MIMALLOC_PURGE_DELAY=-1");
    expect(readFileSync(`/proc/${srv.proc.pid}/cmdline`, "latin1").split("\0").slice(1, 4)).toEqual(["start", "--port", "0"]);
    await using boss = Boss.toDist({ host: srv.host, port: srv.port }, "boss");
    expect(await boss.envVar("MIMALLOC_PURGE_DELAY")).toBeUndefined();
    expect(await boss.envVar("AS_START_ENV_ADDED")).toBeUndefined();
  });

  test("an operator's own MIMALLOC_PURGE_DELAY is kept, with no second start", async () => {
    await using srv = await startServer([bin], ["--port", "0"], { cwd: bare, env: { MIMALLOC_PURGE_DELAY: "10" } });
    const env = startEnv(srv.proc.pid);
    expect(env).toContain("MIMALLOC_PURGE_DELAY=10");
    expect(env.some((e) => e.startsWith("AS_START_ENV_ADDED="))).toBe(false);
  });

  test("SIGTERM drains and exits 0", async () => {
    await using srv = await startServer([bin], ["--port", "0"], { cwd: bare });
    expect(await srv.stop("SIGTERM")).toBe(0);
  });

  test("__child serves over IPC: it imports a user module and sends the ready frame", async () => {
    const conf = { id: "c".repeat(32), key: "k".repeat(32), modules: [pathToFileURL(agentFile).href], capacity: 4, maxQueue: 16, maxPoolSize: 16, maxExpireTime: 60, maxTimeoutSeconds: 5 };
    const { promise: ready, resolve } = Promise.withResolvers<unknown>();
    await using child = Bun.spawn([bin, "__child"], {
      cwd: bare,
      env: { ...process.env, AS_CHILD_CONFIG: JSON.stringify(conf) },
      stdio: ["ignore", "ignore", "pipe"],
      serialization: "advanced",
      ipc: (msg) => resolve(msg),
    });
    const early = child.exited.then(async (code) => ({ exited: code, stderr: await new Response(child.stderr).text() }));
    expect(await Promise.race([ready, early])).toMatchObject({ k: "ready", id: conf.id });
  });
});
