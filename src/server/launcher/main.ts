/**
 * Entry of a server subprocess (`launch({ inSubprocess: true })`): `bun launcher-main.ts` (or
 * the compiled binary's `__server`), with a `ServerProcessConfig` as the first line of stdin
 * (never argv: it holds the token, API keys and Redis passwords, and argv is public through
 * `ps`). It imports the modules of the classes to serve, launches in-process, prints exactly
 * one line `AS-SERVER READY <host> <port> <serverId>[ metrics=<port>]` on stdout once calls are accepted, and
 * exits 0 after `shutdown()` on SIGTERM/SIGINT, a remote `stop`, or (when asked) the end of
 * stdin.
 */
import { watchAgentExits } from "../agent-exit.ts";
import { setProcessLimits } from "../../client/refs.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { findClass } from "../../core/registry.ts";
import { RpcAgentServerLauncher } from "./launcher.ts";
import type { ServerProcessConfig } from "./subprocess.ts";
import { dropAddedStartEnv } from "../../core/server-env.ts";

/** Run a server subprocess from the config line on its stdin; never returns. */
export async function runServerMain(): Promise<never> {
  dropAddedStartEnv();
  try {
    const input = stdinLines();
    const line = await input.first;
    if (line === undefined) throw new Error("no config on stdin (this entry is started by launch({ inSubprocess: true }))");
    const conf = JSON.parse(line) as ServerProcessConfig;
    const { classes, exitOnStdinClose, tls, token, ...opts } = conf;
    // Values this process encodes as a client (calls its agents make) obey the same limit.
    setProcessLimits({ ...DEFAULT_LIMITS, maxMessageBytes: opts.maxMessageBytes });
    const custom: Function[] = [];
    for (const c of classes ?? []) {
      await import(c.module);
      const e = findClass(c.name, c.module);
      if (!e) throw new Error(`class ${c.name} is not @dist-registered in ${c.module}`);
      custom.push(e.cls as unknown as Function);
    }
    const launcher = new RpcAgentServerLauncher({
      ...opts,
      customAgentClasses: custom,
      ...(token ? { token } : {}),
      ...(tls ? { tlsCert: tls.cert, tlsKey: tls.key, ...(tls.clientCa ? { tlsClientCa: tls.clientCa } : {}) } : {}),
    });
    await launcher.launch();
    // This process is the server alone: an agent that ends it is named in the log.
    watchAgentExits(launcher.serverId);
    const stop = () => void launcher.shutdown();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    if (exitOnStdinClose) void input.ended.then(stop);
    const metrics = launcher.metricsPort === undefined ? "" : ` metrics=${launcher.metricsPort}`;
    process.stdout.write(`AS-SERVER READY ${launcher.host} ${launcher.port} ${launcher.serverId}${metrics}\n`);
    await launcher.waitUntilTerminate();
    process.exit(0);
  } catch (e) {
    process.stderr.write(`as-server: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}

/** The first line of stdin (undefined if it ends before one), and the end of stdin. */
function stdinLines(): { first: Promise<string | undefined>; ended: Promise<void> } {
  const first = Promise.withResolvers<string | undefined>();
  const ended = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    let got = false;
    try {
      for await (const chunk of Bun.stdin.stream()) {
        if (got) continue; // after the config only the end matters
        buf += dec.decode(chunk, { stream: true });
        const nl = buf.indexOf("\n");
        if (nl >= 0) {
          got = true;
          first.resolve(buf.slice(0, nl));
          buf = "";
        }
      }
    } catch {
      // A broken pipe is an end too.
    }
    if (!got) first.resolve(undefined);
  })();
  return { first: first.promise, ended };
}

if (import.meta.main) await runServerMain();
