/**
 * Entry of a server subprocess (`launch({ inSubprocess: true })`): `bun launcher-main.ts <json>`
 * with a `ServerProcessConfig`, the token in env `AS_SERVER_TOKEN`. It imports the modules of
 * the classes to serve, launches in-process, prints exactly one line
 * `AS-SERVER READY <host> <port> <serverId>` on stdout once calls are accepted, and exits 0
 * after `shutdown()` on SIGTERM/SIGINT, a remote `stop`, or (when asked) the end of stdin.
 */
import { setProcessLimits } from "../rpc/refs.ts";
import { DEFAULT_LIMITS } from "../rpc/limits.ts";
import { findClass } from "../rpc/registry.ts";
import { RpcAgentServerLauncher } from "./launcher.ts";
import { TLS_ENV, type ServerProcessConfig } from "./launcher-subprocess.ts";

/** Run a server subprocess from its JSON config; never returns. */
export async function runServerMain(json: string): Promise<never> {
  try {
    const conf = JSON.parse(json) as ServerProcessConfig;
    const { classes, exitOnStdinClose, ...opts } = conf;
    // Values this process encodes as a client (calls its agents make) obey the same limit.
    setProcessLimits({ ...DEFAULT_LIMITS, maxMessageBytes: opts.maxMessageBytes });
    const custom: Function[] = [];
    for (const c of classes ?? []) {
      await import(c.module);
      const e = findClass(c.name, c.module);
      if (!e) throw new Error(`class ${c.name} is not @dist-registered in ${c.module}`);
      custom.push(e.cls as unknown as Function);
    }
    // TLS material comes in the environment (never argv); child servers must not inherit it.
    const tlsJson = process.env[TLS_ENV];
    delete process.env[TLS_ENV];
    const tls = tlsJson ? (JSON.parse(tlsJson) as { cert: string; key: string; clientCa?: string }) : undefined;
    const launcher = new RpcAgentServerLauncher({
      ...opts,
      customAgentClasses: custom,
      ...(tls ? { tlsCert: tls.cert, tlsKey: tls.key, ...(tls.clientCa ? { tlsClientCa: tls.clientCa } : {}) } : {}),
    });
    await launcher.launch();
    const stop = () => void launcher.shutdown();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    if (exitOnStdinClose) void untilStdinEnds().then(stop);
    process.stdout.write(`AS-SERVER READY ${launcher.host} ${launcher.port} ${launcher.serverId}\n`);
    await launcher.waitUntilTerminate();
    process.exit(0);
  } catch (e) {
    process.stderr.write(`as-server: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}

async function untilStdinEnds(): Promise<void> {
  try {
    for await (const _ of Bun.stdin.stream()) {
      // Nothing is ever sent; only the end matters.
    }
  } catch {
    // A broken pipe is an end too.
  }
}

if (import.meta.main) await runServerMain(process.argv[process.argv.length - 1] ?? "{}");
