/**
 * A newcomer's first hour (issue 14): the README's example type-checks in a `bun init`
 * project, examples import the package as users do, messages show round numbers, and the
 * deploy script can be run twice.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Counter } from "./fixtures/child-agents.ts";
import { REPO, runCli } from "./helpers/cli.ts";

const scratch = mkdtempSync(join(tmpdir(), "as-newcomer-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The tsconfig `bun init` writes (Bun 1.4.5), comments dropped. */
const BUN_INIT_TSCONFIG = {
  compilerOptions: {
    lib: ["ESNext"],
    target: "ESNext",
    module: "Preserve",
    moduleDetection: "force",
    jsx: "react-jsx",
    allowJs: true,
    types: ["bun"],
    moduleResolution: "bundler",
    allowImportingTsExtensions: true,
    verbatimModuleSyntax: true,
    noEmit: true,
    strict: true,
    skipLibCheck: true,
    noFallthroughCasesInSwitch: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    noUnusedLocals: false,
    noUnusedParameters: false,
    noPropertyAccessFromIndexSignature: false,
  },
};

describe("README", () => {
  test("the main example type-checks under bun init's tsconfig, importing \"actorscope\" as an installed package", async () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const code = /^## Example\n\n```ts\n([\s\S]*?)^```/m.exec(readme)?.[1];
    expect(code).toContain('from "actorscope"');
    const project = join(scratch, "user-project");
    mkdirSync(join(project, "node_modules", "@types"), { recursive: true });
    // The user's node_modules: actorscope (this checkout) and @types/bun, as `bun add` leaves them.
    symlinkSync(REPO, join(project, "node_modules", "actorscope"), "dir");
    symlinkSync(join(REPO, "node_modules", "@types", "bun"), join(project, "node_modules", "@types", "bun"), "dir");
    writeFileSync(join(project, "index.ts"), code!);
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify({ ...BUN_INIT_TSCONFIG, files: ["index.ts"] }, null, 2));
    const r = await runCli([process.execPath, join(REPO, "node_modules", "typescript", "bin", "tsc")], ["-p", project, "--pretty", "false"], { cwd: project, timeoutMs: 60_000 });
    // The package's own sources are checked by test/typecheck.test.ts; here, the user's file.
    const ours = r.stdout.split("\n").filter((l) => l.startsWith("index.ts"));
    expect(ours).toEqual([]);
  }, 70_000);

  test("the Install section shows the ways to add the package and the tsconfig it needs", () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const install = readme.slice(readme.indexOf("## Install"), readme.indexOf("## Example"));
    for (const s of ["bun pm pack", "bun add /path/to/actorscope-0.1.0.tgz", "bun add /path/to/actorscope", "experimentalDecorators", "NodeNext", '"moduleResolution": "bundler"', "override"]) {
      expect(install).toContain(s);
    }
  });
});

describe("examples", () => {
  test("every example imports the package as a user would (\"actorscope\"), never ../../src", () => {
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else if (e.name.endsWith(".ts")) files.push(join(d, e.name));
      }
    };
    walk(join(REPO, "examples"));
    expect(files.length).toBeGreaterThan(4);
    for (const f of files) expect({ f, text: readFileSync(f, "utf8") }).not.toMatchObject({ text: expect.stringMatching(/from ["'](\.\.\/)+src\//) });
    expect(files.filter((f) => readFileSync(f, "utf8").includes('from "actorscope"')).length).toBeGreaterThan(4);
  });
});

describe("messages", () => {
  test("a deadline given in fractional milliseconds is shown rounded", async () => {
    await using c = Counter.toDist(true, 1, "round");
    const e = (await c.hang().result(499.46322399999997).catch((x: unknown) => x)) as Error & { code?: string };
    expect(e.code).toBe("DEADLINE_EXCEEDED");
    expect(e.message).toMatch(/within \d+ ms/);
    expect(e.message).not.toMatch(/\d\.\d/);
  });
});

describe("examples/deploy/launch-workers.sh", () => {
  test("a second start leaves the running server alone (no 'Text file busy'), stop waits for it, and an unchanged binary is not copied again", async () => {
    const dir = join(scratch, "deploy");
    mkdirSync(dir, { recursive: true });
    // "ssh" runs the command here, "scp" is cp; the "binary" runs the CLI from source.
    const ssh = join(dir, "ssh-local");
    writeFileSync(ssh, `#!/bin/sh\nshift\nexec sh -c "$*"\n`);
    const scp = join(dir, "scp-local");
    writeFileSync(scp, `#!/bin/sh\nexec cp "$1" "\${2#*:}"\n`);
    const bin = join(dir, "as-server-bin");
    writeFileSync(bin, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(REPO, "bin/as-server.ts"))} "$@"\n`);
    for (const f of [ssh, scp, bin]) chmodSync(f, 0o755);
    const port = freePort();
    const hosts = join(dir, "hosts.txt");
    writeFileSync(hosts, `127.0.0.1 ${port}\n`);
    const remoteDir = join(dir, "remote-%h");
    const env = { BIN: bin, REMOTE_DIR: remoteDir, OUT: join(dir, "servers.txt"), SSH: ssh, SCP: scp, AS_SERVER_TOKEN: `dep-${crypto.randomUUID()}`, WAIT_S: "20" };
    const script = join(REPO, "examples/deploy/launch-workers.sh");
    const pidFile = join(remoteDir.replace("%h", "127.0.0.1"), "as-server.pid");
    const run = (cmd: string) => runCli(["bash", script], [cmd, hosts], { env, timeoutMs: 40_000 });
    try {
      const first = await run("start");
      expect(first.code, first.stderr).toBe(0);
      expect(readFileSync(env.OUT, "utf8")).toBe(`127.0.0.1:${port}\n`);
      const pid = Number(readFileSync(pidFile, "utf8"));

      const again = await run("start");
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain(`already running (pid ${pid})`);
      expect(again.stderr).not.toContain("Text file busy");
      expect(Number(readFileSync(pidFile, "utf8"))).toBe(pid);

      const stopped = await run("stop");
      expect(stopped.code, stopped.stderr).toBe(0);
      // stop returned only once the server was gone.
      expect(() => process.kill(pid, 0)).toThrow();

      const restarted = await run("start");
      expect(restarted.code, restarted.stderr).toBe(0);
      expect(restarted.stderr).toMatch(/already has this binary \(sha256 [0-9a-f]{12}…\): not copied/);
      const status = await run("status");
      expect(status.code, status.stderr).toBe(0);
      expect((await run("stop")).code).toBe(0);
    } finally {
      // Whatever failed above: the server (a grandchild, started under nohup) is killed and gone.
      if (existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, "utf8"));
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
        for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(20);
      }
    }
  }, 120_000);
});

/** A port nothing listens on right now. */
function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
