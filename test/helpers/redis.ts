/**
 * A throwaway `redis-server` for tests and benches: random free loopback port, no
 * persistence (so a restart really loses everything), killed and awaited on `stop()`.
 *
 * Missing `redis-server`: `bun run test` (scripts/test.ts) installs it when it can; otherwise
 * the Redis tests are reported skipped with the reason (test files take `describe` / `test`
 * from here), except in CI, where they run and fail loudly: the Redis pool must be tested.
 */
import type { Subprocess } from "bun";
import { describeUnless, requirement, testUnless } from "./needs.ts";

/** A running test Redis. */
export interface TestRedis {
  /** `redis://127.0.0.1:<port>` (with `:<password>@` when started with one). */
  url: string;
  port: number;
  /** Kill the server and wait until the process has exited. Idempotent. */
  stop(): Promise<void>;
  /** Kill the server and start a fresh, empty one on the same port; resolves when it answers PING. */
  restart(): Promise<void>;
}

/** Options of `startRedis`. */
export interface StartRedisOptions {
  /** Require this password (`--requirepass`). */
  password?: string;
}

const MISSING = "redis-server is required for the Redis pool tests; .ci/run installs it with apt-get";

/** Why the Redis tests cannot run here, or undefined (always undefined in CI). */
export const redisMissing: string | undefined = requirement("Redis pool tests", () =>
  Bun.which("redis-server") ? undefined : "redis-server is not installed (apt-get install redis-server; `bun run test` installs it when run as root)",
);
/** `describe` for suites that start a redis-server: skipped, with the reason, when there is none. */
export const describe = describeUnless(redisMissing);
/** `test` for tests that start a redis-server: skipped, with the reason, when there is none. */
export const test = testUnless(redisMissing, "redis-server not installed");

/** Servers still running: killed if the test process exits without stopping them. */
const live = new Set<Subprocess>();
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

/** Start a `redis-server` on a free loopback port and wait until it answers PING. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const bin = Bun.which("redis-server");
  if (!bin) throw new Error(MISSING);
  let port = 0;
  let proc: Subprocess | undefined;
  // Another process may grab the port between our probe and redis binding it: retry then.
  for (let attempt = 0; attempt < 5 && !proc; attempt++) {
    port = freePort();
    proc = await spawnRedis(bin, port, opts.password).catch(() => undefined);
  }
  if (!proc) throw new Error(`could not start redis-server on a free port (${bin})`);
  const auth = opts.password === undefined ? "" : `:${encodeURIComponent(opts.password)}@`;
  let current: Subprocess | undefined = proc;
  const stop = async () => {
    const p = current;
    current = undefined;
    if (!p) return;
    p.kill("SIGKILL");
    await p.exited;
    live.delete(p);
  };
  return {
    url: `redis://${auth}127.0.0.1:${port}`,
    port,
    stop,
    async restart() {
      await stop();
      current = await spawnRedis(bin, port, opts.password);
    },
  };
}

/** A port nothing listens on right now: bind port 0, read it, release it. */
export function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

async function spawnRedis(bin: string, port: number, password: string | undefined): Promise<Subprocess> {
  const args = [bin, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  if (password !== undefined) args.push("--requirepass", password);
  const proc = Bun.spawn(args, { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  const deadline = performance.now() + 5_000;
  try {
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`redis-server exited at start on port ${port}: ${await new Response(proc.stderr).text()}`);
      }
      if (await answersPing(port, password)) {
        live.add(proc);
        return proc;
      }
      if (performance.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within 5 s`);
      // Startup takes a few ms; a short pause between probes is a retry interval, not a
      // stand-in for an event (redis-server signals readiness on no channel we can wait on).
      await Bun.sleep(10);
    }
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw e;
  }
}

/** One raw RESP round trip: `AUTH` (if any) + `PING`, answered with `+PONG`? */
async function answersPing(port: number, password: string | undefined): Promise<boolean> {
  const { promise, resolve } = Promise.withResolvers<boolean>();
  let got = "";
  const timer = setTimeout(() => resolve(false), 500);
  try {
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.write((password === undefined ? "" : `AUTH ${password}\r\n`) + "PING\r\n");
        },
        data(s, d) {
          got += d.toString();
          if (got.includes("+PONG")) {
            resolve(true);
            s.end();
          }
        },
        close() {
          resolve(false);
        },
        error() {
          resolve(false);
        },
      },
    });
    const ok = await promise;
    sock.end();
    return ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
