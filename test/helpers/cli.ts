/**
 * Test harness for the `as-server` CLI: run it to completion, or start a server and wait for
 * its listening line (read from stdout, never a sleep). Every process is killed and awaited on
 * dispose, so `await using` leaves nothing behind even when an assertion fails.
 */
import type { Subprocess } from "bun";
import { join, resolve } from "node:path";

/** Repository root. */
export const REPO = resolve(import.meta.dir, "../..");

/** `bun bin/as-server.ts`: the CLI from source. */
export const SOURCE_CLI: readonly string[] = [process.execPath, join(REPO, "bin/as-server.ts")];

/** The listening line: host, port, server id. */
export const LISTENING = /as-server listening on (\S+):(\d+) \(server id ([^)\s]+)\)/;

/** Spawn options shared by the helpers. */
export interface CliOptions {
  cwd?: string;
  /** Added to (or, with `undefined`, removed from) the test's environment. */
  env?: Record<string, string | undefined>;
  /** Kill the process if it has not finished by then (a failure deadline, not a wait). */
  timeoutMs?: number;
}

/** How a CLI run ended. */
export interface CliResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** The environment for a spawned CLI: plain output at info level, no inherited token. */
export function cliEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", AS_LOG_LEVEL: "info", AS_SERVER_TOKEN: undefined, ...extra };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/** Run `cmd args` to completion. */
export async function runCli(cmd: readonly string[], args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  await using proc = Bun.spawn([...cmd, ...args], {
    cwd: opts.cwd ?? REPO,
    env: cliEnv(opts.env),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs ?? 20_000,
  });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  return { code: proc.exitCode, signal: proc.signalCode === null ? null : String(proc.signalCode), stdout, stderr };
}

/** Collects a stream's lines and lets a test wait for one matching a pattern. */
export class LineReader {
  readonly lines: string[] = [];
  #waiters = new Set<() => void>();
  #ended = false;
  /** Settles when the stream has ended. */
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#pump(stream);
  }

  /** All text so far. */
  get text(): string {
    return this.lines.join("\n");
  }

  /** The first line matching `re` (already seen or still to come); rejects if the stream ends first. */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const l of this.lines) {
        const m = l.match(re);
        if (m) return m;
      }
      if (this.#ended) throw new Error(`stream ended without a line matching ${re}; got:\n${this.text}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no line matching ${re} within ${timeoutMs} ms; got:\n${this.text}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        const wake = (): void => {
          clearTimeout(t);
          this.#waiters.delete(wake);
          res();
        };
        this.#waiters.add(wake);
      });
    }
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of stream) {
        buf += dec.decode(chunk, { stream: true });
        const parts = buf.split("\n");
        buf = parts.pop() ?? "";
        if (parts.length) {
          this.lines.push(...parts);
          this.#wake();
        }
      }
    } finally {
      if (buf) this.lines.push(buf);
      this.#ended = true;
      this.#wake();
    }
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}

/** A server started by `startServer`. */
export interface RunningServer extends AsyncDisposable {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  host: string;
  port: number;
  serverId: string;
  stdout: LineReader;
  stderr: LineReader;
  /** Send `signal` (default SIGTERM) and return the exit code once the process has ended. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Start `cmd start ...args` and resolve once it prints its listening line. */
export async function startServer(cmd: readonly string[], args: readonly string[], opts: CliOptions = {}): Promise<RunningServer> {
  const proc = Bun.spawn([...cmd, "start", ...args], {
    cwd: opts.cwd ?? REPO,
    env: cliEnv(opts.env),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const stdout = new LineReader(proc.stdout);
  const stderr = new LineReader(proc.stderr);
  const dispose = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await proc.exited;
    await Promise.allSettled([stdout.done, stderr.done]);
  };
  try {
    const m = await stdout.waitFor(LISTENING, opts.timeoutMs ?? 20_000);
    return {
      proc,
      host: m[1]!,
      port: Number(m[2]),
      serverId: m[3]!,
      stdout,
      stderr,
      async stop(signal: NodeJS.Signals = "SIGTERM") {
        proc.kill(signal);
        const code = await proc.exited;
        await Promise.allSettled([stdout.done, stderr.done]);
        return code;
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw new Error(`${(e as Error).message}\nstderr:\n${stderr.text}`);
  }
}
