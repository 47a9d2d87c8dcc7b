/**
 * Helpers of the pre-authentication and download tests: a gRPC server process with chosen
 * bounds (test/fixtures/bounded-server.ts), a hostile HTTP/2 client process
 * (test/fixtures/h2-attack.ts), the resident memory of a process read from /proc, and the
 * worst latency of a call repeated while something else goes on. Every process started here
 * is killed and awaited on dispose.
 */
import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { BoundedServerConfig } from "../fixtures/bounded-server.ts";
import type { AttackConfig, Report } from "../fixtures/h2-attack.ts";
import { LineReader, REPO } from "./cli.ts";

/** Resident set size of process `pid`, in MiB (VmRSS from /proc/<pid>/status). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) / 1024;
}

/** Samples `rssMiB(pid)` every 20 ms until `stop()`, which returns the largest seen. */
export function peakRss(pid: number): { stop(): number } {
  let peak = rssMiB(pid);
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {
      // The process is gone: the test will say so.
    }
  }, 20);
  return {
    stop() {
      clearInterval(t);
      return Math.max(peak, rssMiB(pid));
    },
  };
}

/** A running fixture server (test/fixtures/bounded-server.ts). */
export interface BoundedServer extends AsyncDisposable {
  port: number;
  pid: number;
  /** Run a full garbage collection in the server and wait until it is done. */
  gc(): Promise<void>;
}

/** Start test/fixtures/bounded-server.ts with `conf`; resolves once it accepts calls. */
export async function boundedServer(conf: BoundedServerConfig): Promise<BoundedServer> {
  const proc = Bun.spawn([process.execPath, join(REPO, "test/fixtures/bounded-server.ts")], {
    cwd: REPO,
    env: { ...process.env, AS_TEST_SERVER: JSON.stringify(conf) },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = new LineReader(proc.stdout);
  const err = new LineReader(proc.stderr);
  const dispose = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await proc.exited;
    await Promise.allSettled([out.done, err.done]);
  };
  let collections = 0;
  try {
    const m = await out.waitFor(/^listening (\d+)$/);
    return {
      port: Number(m[1]),
      pid: proc.pid,
      async gc() {
        const n = ++collections;
        proc.stdin.write("gc\n");
        proc.stdin.flush();
        await out.waitFor(new RegExp(`^gc ${n} done$`));
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw new Error(`${(e as Error).message}\nstderr:\n${err.text}`);
  }
}

/** A running attacker process (test/fixtures/h2-attack.ts). */
export interface Attack extends AsyncDisposable {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  stdout: LineReader;
  /** Its report, once every stream has closed (or `holdMs` passed). */
  report(): Promise<Report>;
}

/** Start an attacker with `conf`. */
export function attack(conf: AttackConfig): Attack {
  const proc = Bun.spawn([process.execPath, join(REPO, "test/fixtures/h2-attack.ts")], {
    cwd: REPO,
    env: { ...process.env, AS_ATTACK: JSON.stringify(conf) },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const stdout = new LineReader(proc.stdout);
  const stderr = new LineReader(proc.stderr);
  return {
    proc,
    stdout,
    async report() {
      await proc.exited;
      await stdout.done;
      const last = stdout.lines.filter((l) => l.startsWith("{")).at(-1);
      if (!last) throw new Error(`the attacker reported nothing (exit ${proc.exitCode}); stderr:\n${stderr.text}`);
      return JSON.parse(last) as Report;
    },
    async [Symbol.asyncDispose]() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
      await Promise.allSettled([stdout.done, stderr.done]);
    },
  };
}

/**
 * Call `fn` again and again (at most `maxCalls` times, one at a time) until `until` settles;
 * returns how many calls ran and the slowest one, in ms.
 */
export async function worstLatency(fn: () => Promise<unknown>, until: Promise<unknown>, maxCalls = 2000): Promise<{ calls: number; worstMs: number }> {
  let settled = false;
  void until.finally(() => (settled = true)).catch(() => {});
  let worstMs = 0;
  let calls = 0;
  while (!settled && calls < maxCalls) {
    const t = performance.now();
    await fn();
    worstMs = Math.max(worstMs, performance.now() - t);
    calls++;
    // Leave the event loop a turn, so the attack and the RSS sampler run in between.
    await new Promise((r) => setTimeout(r, 5));
  }
  return { calls, worstMs };
}

/** The Batch method path and the Download one. */
export const BATCH_PATH = "/actorscope.AgentServer/Batch";
export const DOWNLOAD_PATH = "/actorscope.AgentServer/Download";

/** A `DownloadRequest { path }` as protobuf hex (field 1, a string under 128 bytes). */
export function downloadRequestHex(path: string): string {
  const p = Buffer.from(path);
  if (p.length >= 128) throw new Error("path too long for this helper");
  return Buffer.concat([Buffer.from([0x0a, p.length]), p]).toString("hex");
}
