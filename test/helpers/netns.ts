/**
 * Test hosts for multi-host tests: Linux network namespaces with their own addresses, joined
 * by a bridge inside this sandbox. The test process stays in the root namespace, which gets
 * an address on the bridge too, so it is one more "machine" on the same private network.
 *
 *   root namespace (client)  10.77.X.1 ── bridge asb<id> ──┬─ veth asv<id>1 ── ns "as-mh-…-h1" 10.77.X.2
 *                                                          ├─ veth asv<id>2 ── ns "as-mh-…-h2" 10.77.X.3
 *                                                          └─ veth asv<id>3 ── ns "as-mh-…-h3" 10.77.X.4
 *
 * Only these addresses are ever targeted. X is picked per run among subnets not in use on
 * this machine, and every name carries the run's id and pid, so a leftover from a killed run
 * never collides. Everything is torn down by `destroy()` (call it from afterAll); failing that
 * (the runner killed, or `bun test`, which runs no 'exit' hooks), by a detached reaper shell
 * that waits for this process to end and then deletes what it made.
 *
 * Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2. Without them the multi-host tests
 * are reported skipped with the reason (test files take `describe` / `test` / `beforeAll` from
 * here), except in CI, where `requireNetns()` throws the reason and they fail loudly.
 */
import { spawnSync } from "bun";
import { spawn as spawnChild } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, runCli, startServer, type CliOptions, type RunningServer } from "./cli.ts";
import { beforeAllUnless, describeUnless, requirement, testUnless } from "./needs.ts";

/** One test host: a network namespace and its address. */
export interface TestHost {
  /** Namespace name (`ip netns exec <ns>`). */
  ns: string;
  /** Its address on the test network. */
  addr: string;
  /** The root-namespace end of its veth pair: `ip link set <veth> down` cuts the host off. */
  veth: string;
}

/** A private network of test hosts. */
export interface TestNet extends AsyncDisposable {
  /** Run id: part of every name. */
  readonly id: string;
  /** The root namespace's own address on the network (the client "machine"). */
  readonly gateway: string;
  readonly bridge: string;
  readonly hosts: readonly TestHost[];
  /** Cut a host off the network (its veth goes down); `reconnect` undoes it. */
  cut(h: TestHost): void;
  reconnect(h: TestHost): void;
  /** Start `bin start ...args` inside a host, resolving once it listens. */
  startServer(h: TestHost, bin: string, args: readonly string[], opts?: CliOptions): Promise<RunningServer>;
  /** Kill every process in the namespaces, delete them and the links. Idempotent. */
  destroy(): Promise<void>;
}

const PREFIX = "as-mh-";
/** Namespace names: as-mh-<pid>-<id>-h<i>. */
const NS_RE = /^as-mh-(\d+)-([a-z0-9]+)-h\d+$/;

/** Run `ip ...args`; throws with its stderr on failure. */
export function ip(...args: string[]): string {
  const r = spawnSync(["ip", ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")} failed (exit ${r.exitCode}): ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** Like `ip`, but never throws (teardown). */
function ipQuiet(...args: string[]): void {
  spawnSync(["ip", ...args], { stdout: "ignore", stderr: "ignore" });
}

/**
 * Make sure this process can create network namespaces; throws an Error that says why not.
 * Multi-host tests call it first so a sandbox without the privileges fails (in CI) with the reason.
 */
export function requireNetns(): void {
  const why = netnsProblem();
  if (why) throw new Error(`multi-host tests ${why}`);
}

/** Why network namespaces cannot be made here (e.g. "need root …"), or undefined when they can. */
export function netnsProblem(): string | undefined {
  if (process.platform !== "linux") return `need Linux network namespaces; this is ${process.platform}`;
  if (process.getuid?.() !== 0) return `need root to create network namespaces (ip netns); running as uid ${process.getuid?.()}`;
  if (!Bun.which("ip")) return "need iproute2 (`ip`): apt-get install iproute2 (`bun run test` installs it when run as root)";
  const probe = `${PREFIX}probe-${process.pid}`;
  try {
    ip("netns", "add", probe);
  } catch (e) {
    return `cannot create a network namespace (needs CAP_SYS_ADMIN and CAP_NET_ADMIN): ${(e as Error).message}`;
  } finally {
    ipQuiet("netns", "del", probe);
  }
  return undefined;
}

/** Why the multi-host tests cannot run here, or undefined (always undefined in CI). */
export const netnsMissing: string | undefined = requirement("multi-host tests", netnsProblem);
/** `describe` / `test` / `beforeAll` for multi-host tests: skipped (set-up not run), with the reason, without netns. */
export const describe = describeUnless(netnsMissing);
export const test = testUnless(netnsMissing, "needs root and iproute2 for network namespaces");
export const beforeAll = beforeAllUnless(netnsMissing);

/** Delete namespaces and links left by runs whose process is gone. */
function sweepLeftovers(): void {
  for (const line of ip("netns", "list").split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = NS_RE.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    killNamespace(name);
    ipQuiet("netns", "del", name);
    ipQuiet("link", "del", `asb${m[2]}`);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** SIGKILL what runs inside one of our namespaces (our servers and their children). */
function killNamespace(ns: string): void {
  const r = spawnSync(["ip", "netns", "pids", ns], { stdout: "pipe", stderr: "ignore" });
  for (const p of r.stdout.toString().split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Single-quote for sh. */
function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Run `script` (sh) once this process has ended, however it ends: a detached shell polls our
 * pid. Returns a function that cancels it (kills that shell, which this process started).
 */
export function whenProcessGone(script: string): () => void {
  const child = spawnChild("sh", ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; ${script}`], { detached: true, stdio: "ignore" });
  child.unref();
  return () => {
    try {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
}

/** A /24 in 10.77.0.0/16 that no interface or route of this machine uses. */
function freeSubnet(): number {
  const used = ip("-4", "addr") + ip("-4", "route");
  for (let i = 0; i < 64; i++) {
    const x = 1 + Math.floor(Math.random() * 254);
    if (!used.includes(`10.77.${x}.`)) return x;
  }
  throw new Error("no free 10.77.X.0/24 subnet for the test network");
}

/**
 * Create `n` test hosts (default 3) on a private bridge; the root namespace joins as the
 * client. Throws (after undoing what it made) if anything fails.
 */
export async function createTestNet(n = 3): Promise<TestNet> {
  requireNetns();
  sweepLeftovers();
  const id = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
  const x = freeSubnet();
  const bridge = `asb${id}`;
  const hosts: TestHost[] = Array.from({ length: n }, (_, i) => ({
    ns: `${PREFIX}${process.pid}-${id}-h${i + 1}`,
    addr: `10.77.${x}.${i + 2}`,
    veth: `asv${id}${i + 1}`,
  }));
  const servers = new Set<RunningServer>();
  let destroyed = false;
  const teardown = (): void => {
    if (destroyed) return;
    destroyed = true;
    for (const s of servers) s.proc.kill("SIGKILL");
    for (const h of hosts) {
      killNamespace(h.ns);
      ipQuiet("netns", "del", h.ns);
      ipQuiet("link", "del", h.veth);
    }
    ipQuiet("link", "del", bridge);
  };
  // If this process ends before destroy(): the same teardown, from a reaper shell.
  const nsList = hosts.map((h) => sh(h.ns)).join(" ");
  const cancelReaper = whenProcessGone(
    `for ns in ${nsList}; do for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p"; done; ip netns del "$ns"; done 2>/dev/null; ` +
      `for l in ${hosts.map((h) => sh(h.veth)).join(" ")} ${sh(bridge)}; do ip link del "$l"; done 2>/dev/null`,
  );
  process.on("exit", teardown);
  try {
    ip("link", "add", bridge, "type", "bridge");
    ip("addr", "add", `10.77.${x}.1/24`, "dev", bridge);
    ip("link", "set", bridge, "up");
    for (const h of hosts) {
      const peer = `${h.veth}p`;
      ip("netns", "add", h.ns);
      ip("link", "add", h.veth, "type", "veth", "peer", "name", peer);
      ip("link", "set", peer, "netns", h.ns);
      ip("link", "set", h.veth, "master", bridge, "up");
      ip("-n", h.ns, "addr", "add", `${h.addr}/24`, "dev", peer);
      ip("-n", h.ns, "link", "set", peer, "up");
      ip("-n", h.ns, "link", "set", "lo", "up");
    }
  } catch (e) {
    teardown();
    process.off("exit", teardown);
    cancelReaper();
    throw e;
  }
  const net: TestNet = {
    id,
    gateway: `10.77.${x}.1`,
    bridge,
    hosts,
    cut: (h) => void ip("link", "set", h.veth, "down"),
    reconnect: (h) => void ip("link", "set", h.veth, "up"),
    async startServer(h, bin, args, opts = {}) {
      const srv = await startServer(["ip", "netns", "exec", h.ns, bin], args, opts);
      servers.add(srv);
      return srv;
    },
    async destroy() {
      await Promise.allSettled([...servers].map((s) => (s.proc.exitCode === null && s.proc.signalCode === null ? s.stop("SIGKILL") : s.proc.exited)));
      teardown();
      process.off("exit", teardown);
      cancelReaper();
    },
    [Symbol.asyncDispose]: () => net.destroy(),
  };
  return net;
}

/**
 * The compiled `as-server`: `AS_SERVER_BIN` when set, else built once per process by
 * scripts/build.ts into a temp dir (about a second).
 */
let built: Promise<string> | undefined;
export function compiledServer(): Promise<string> {
  if (process.env.AS_SERVER_BIN) return Promise.resolve(process.env.AS_SERVER_BIN);
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "as-mh-bin-"));
    // No afterAll owns it (it is shared by the process): removed once the process ends.
    whenProcessGone(`rm -rf ${sh(dir)}`);
    const bin = join(dir, "as-server");
    const r = await runCli([process.execPath, join(REPO, "scripts/build.ts")], ["--outfile", bin], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    return bin;
  })();
  return built;
}
