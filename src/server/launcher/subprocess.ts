/**
 * `launch({ inSubprocess: true })`, parent side: spawn `bun launcher-main.ts` (or the compiled
 * binary's `__server`), write its config as one JSON line to its stdin, wait for its
 * `AS-SERVER READY <host> <port> <id>` line, and stop it with SIGTERM. The subprocess dies with
 * its parent: it exits when its stdin, a pipe from us, reaches end of file.
 *
 * Nothing secret is ever on the command line, which every local user can read (`ps`,
 * /proc/PID/cmdline): the config holds model configs with API keys, a Redis URL with its
 * password, the token and TLS keys, so all of it goes through the stdin pipe (no size limit
 * either, unlike one argv or environment string: 128 KiB on Linux).
 */
import { selfCommand, stopProcess } from "../../client/spawn.ts";
import { ChildOutput, logChildEvent } from "../../client/child-output.ts";
import { DEFAULTS } from "../../core/defaults.ts";
import type { Subprocess } from "bun";
import type { ModelConfig } from "../../models/store.ts";
import { AgentServerNotAliveError } from "../../core/errors.ts";
import { entryOf } from "../../core/registry.ts";
import type { ServerTls } from "../../core/tls.ts";
import type { RestartPolicy } from "../../client/supervisor.ts";
import { withStartEnv } from "../../core/server-env.ts";

/**
 * What the subprocess is told, as the first line of its stdin (JSON): the launcher's resolved
 * options (each field as in `LauncherOptions`), with classes by reference.
 */
export interface ServerProcessConfig {
  host: string;
  port: number;
  serverId: string;
  capacity: number;
  poolType: "local" | "redis";
  redisUrl: string;
  maxPoolSize: number;
  maxExpireTime: number;
  maxTimeoutSeconds: number;
  localMode: boolean;
  maxMessageBytes: number;
  maxQueue: number;
  maxAgents: number;
  shutdownGraceMs: number;
  streamWindow?: number;
  allowPeers?: string[] | "any";
  agentDir?: string;
  insecure?: boolean;
  hideStacks?: boolean;
  fileDir?: string;
  modelConfigs?: string | ModelConfig | ModelConfig[];
  registry?: string;
  metricsPort?: number;
  isolate?: boolean;
  restart?: RestartPolicy;
  /** `@dist` classes to serve: the subprocess imports `module` and looks `name` up. */
  classes: Array<{ name: string; module: string }>;
  /** Shut down when stdin ends (the parent went away). */
  exitOnStdinClose?: boolean;
  /** The shared secret calls must present. */
  token?: string;
  /** TLS material as PEM texts. */
  tls?: { cert: string; key: string; clientCa?: string };
}

/** A running server subprocess. */
export interface ServerSubprocess {
  /** The port it bound. */
  readonly port: number;
  /** The port of its `/metrics`, when it serves them. */
  readonly metricsPort: number | undefined;
  /** Resolves when the process has exited, for whatever reason. */
  readonly exited: Promise<void>;
  /** SIGTERM (it drains and exits), SIGKILL after `killAfterMs`; resolves once it exited. */
  stop(killAfterMs: number): Promise<void>;
}

/** Options of `launchSubprocess`: the launcher's resolved options. */
export type SubprocessOptions = Omit<ServerProcessConfig, "classes" | "exitOnStdinClose" | "token" | "tls"> & { customAgentClasses: Function[]; readyTimeoutMs?: number };

const READY = /^AS-SERVER READY (\S+) (\d+) (\S+)(?: metrics=(\d+))?$/m;

/** Start a server subprocess; resolves once it accepts calls. */
export async function launchSubprocess(opts: SubprocessOptions, token: string | undefined, tls?: ServerTls): Promise<ServerSubprocess> {
  const { customAgentClasses, readyTimeoutMs = DEFAULTS.readyTimeoutMs, ...rest } = opts;
  const conf: ServerProcessConfig = {
    ...rest,
    classes: customAgentClasses.map(classRef),
    exitOnStdinClose: true,
    ...(token ? { token } : {}),
    ...(tls ? { tls: { cert: tls.cert.toString(), key: tls.key.toString(), ...(tls.clientCa ? { clientCa: tls.clientCa.toString() } : {}) } } : {}),
  };
  // The subprocess takes its token from the config only: not from a variable it would inherit.
  // …and starts with a server's allocator settings (server-env.ts).
  const env = withStartEnv(process.env);
  delete env.AS_SERVER_TOKEN;
  const proc = Bun.spawn(selfCommand("server"), { stdin: "pipe", stdout: "pipe", stderr: "pipe", env });
  // One line; stdin then stays open (its end tells the subprocess that we are gone).
  proc.stdin.write(`${JSON.stringify(conf)}\n`);
  void Promise.resolve(proc.stdin.flush()).catch(() => {});
  // Its lines are tagged with its server id; its stderr tail explains a failed start.
  const label = { serverId: opts.serverId };
  const out = new ChildOutput(label);
  out.pid = proc.pid;
  void out.pump(proc.stderr, "stderr");
  let stopping = false;
  let ready = false;
  // A remote `stop` ends it with code 0: only a failure or a signal we did not send is a crash.
  const exited = proc.exited.then(() => {
    if (!stopping && ready && proc.exitCode !== 0) logChildEvent("child.crashed", `agent server subprocess ${opts.serverId} (pid ${proc.pid}) exited (${proc.signalCode ? `signal ${proc.signalCode}` : `code ${proc.exitCode}`})`, label, proc.pid);
  });
  let port: number;
  let metricsPort: number | undefined;
  try {
    [port, metricsPort] = await readyPort(proc, out, readyTimeoutMs);
    ready = true;
  } catch (e) {
    proc.kill("SIGKILL");
    await exited;
    const why = out.text ? `: ${out.lastLines()}` : "";
    throw new AgentServerNotAliveError(`agent server subprocess failed to start (${(e as Error).message})${why}`, { host: opts.host, port: opts.port });
  }
  return {
    port,
    metricsPort,
    exited,
    stop: (killAfterMs) => {
      stopping = true;
      return stopProcess(proc, killAfterMs);
    },
  };
}

function classRef(c: Function): { name: string; module: string } {
  const e = entryOf(c);
  if (!e?.module) {
    throw new TypeError(`class ${c.name} cannot be served from a subprocess: only @dist classes defined in a file can (the subprocess imports that file)`);
  }
  return { name: e.name, module: e.module };
}

/** Watch stdout for the ready line (kept back; every other line is passed on tagged) until the process ends or time runs out. */
function readyPort(proc: Subprocess<"pipe", "pipe", "pipe">, out: ChildOutput, timeoutMs: number): Promise<[number, number | undefined]> {
  return new Promise<[number, number | undefined]>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no ready line within ${Math.round(timeoutMs)} ms`)), timeoutMs);
    const finish = (r: [number, number | undefined] | Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    void out
      .pump(proc.stdout, "stdout", (line) => {
        if (done) return false;
        const m = READY.exec(line);
        if (!m) return false;
        finish([Number(m[2]), m[4] === undefined ? undefined : Number(m[4])]);
        return true;
      })
      .then(() => finish(new Error(`exited with code ${proc.exitCode ?? proc.signalCode}`)));
    proc.exited.then(() => finish(new Error(`exited with code ${proc.exitCode ?? proc.signalCode}`)));
  });
}
