/**
 * `as-server start`: launch an agent server in this process, print one listening line, serve
 * until SIGINT/SIGTERM or a remote `stop`, then drain and exit 0. The launcher (and with it
 * gRPC) is imported only here, so `--help`, `stop`, `status` and child servers never load it.
 */
import { watchAgentExits } from "../../src/server/agent-exit.ts";
import { defineCommand } from "citty";
import { TOKEN_ON_ARGV, UsageError, isLoopback } from "../args.ts";
import { configureLog, log } from "../log.ts";
import { installRuntimeModule } from "../runtime-module.ts";
import { logOptions, redisUrlHasPassword, startArgs, startOptions } from "./start-args.ts";
import type { LauncherOptions, RpcAgentServerLauncher } from "../../src/server/launcher/launcher.ts";

/** The server this process runs, so that `cleanup()` can stop it whatever happened. */
let running: RpcAgentServerLauncher | undefined;
let detachSignals: (() => void) | undefined;

/** `as-server start`. */
export const start = defineCommand({
  meta: { name: "start", description: "Start an agent server" },
  args: startArgs,
  async run({ args }) {
    configureLog(logOptions(args));
    const opts = startOptions(args);
    // Kept working (AgentScope scripts use it), but said plainly: argv is public on this machine.
    if (args.token !== undefined) log.warn(TOKEN_ON_ARGV);
    if (args["redis-url"] !== undefined && redisUrlHasPassword(args["redis-url"])) {
      log.warn("--redis-url carries a password, visible to every user of this machine (ps): prefer env AS_REDIS_URL");
    }
    if (args.registry !== undefined && redisUrlHasPassword(args.registry)) {
      log.warn("--registry carries a password, visible to every user of this machine (ps): prefer env AS_REGISTRY_URL");
    }
    if (!opts.localMode && !isLoopback(opts.host ?? "") && !opts.token && opts.tlsClientCa === undefined) {
      log.warn(`--insecure: listening on ${opts.host} with no token and no client certificates: anyone who can reach this port can create agents and run their methods`);
    }
    // Agent files import "actorscope"; inside the binary that must be the binary's own classes.
    await installRuntimeModule();
    const launcher = await createLauncher(opts);
    try {
      await launcher.launch();
      // This process is the server alone: an agent that ends it is named in the log.
      watchAgentExits(launcher.serverId);
    } catch (e) {
      throw new Error(launchFailure(e, opts));
    }
    running = launcher;
    detachSignals = onStopSignals(launcher);
    // The one line scripts wait for (see test/helpers/cli.ts): the address really bound, real
    // port, server id; and the name references carry when that is another one.
    const tls = opts.tlsClientCa !== undefined ? " over TLS, client certificates required" : opts.tlsCert !== undefined ? " over TLS" : "";
    const bound = launcher.bindHost === "127.0.0.1" && launcher.host === "localhost" ? "localhost" : launcher.bindHost;
    const named = bound === launcher.host ? "" : `; clients are told ${launcher.host}`;
    log.success(`as-server listening on ${bound}:${launcher.port} (server id ${launcher.serverId})${tls}${named}`);
    if (launcher.metricsPort !== undefined) log.info(`metrics at http://${bound}:${launcher.metricsPort}/metrics`);
    await launcher.waitUntilTerminate();
    running = undefined;
    log.info("as-server stopped");
  },
  async cleanup() {
    detachSignals?.();
    const l = running;
    running = undefined;
    if (l) await l.shutdown();
  },
});

async function createLauncher(opts: LauncherOptions): Promise<RpcAgentServerLauncher> {
  const { RpcAgentServerLauncher } = await import("../../src/server/launcher/launcher.ts");
  try {
    return new RpcAgentServerLauncher(opts);
  } catch (e) {
    // The launcher checks its options too (e.g. exposure without a token): still bad input.
    throw new UsageError((e as Error).message);
  }
}

/** SIGINT/SIGTERM: drain and exit 0; a second signal while draining exits at once. */
function onStopSignals(launcher: RpcAgentServerLauncher): () => void {
  let draining = false;
  const handler = (sig: NodeJS.Signals): void => {
    if (draining) {
      log.warn(`${sig} again: exiting without waiting for calls in flight`);
      process.exit(130);
    }
    draining = true;
    log.info(`${sig}: draining calls in flight, then exiting`);
    launcher.shutdown().catch((e: unknown) => {
      log.error(`shutdown failed: ${(e as Error).message}`);
      process.exitCode = 1;
    });
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
}

/** One clear line for a failed launch; a taken port is the usual cause, and says so (no silent retry on another port). */
function launchFailure(e: unknown, opts: LauncherOptions): string {
  let msg = e instanceof Error ? e.message : String(e);
  if (opts.token) msg = msg.split(opts.token).join("<redacted>");
  const where = opts.port ? `${opts.host}:${opts.port}` : String(opts.host);
  if (/EADDRINUSE|address already in use|No address added/i.test(msg)) {
    return `cannot listen on ${where}: the port is already in use (pick another with --port, or --port 0 for a free one)`;
  }
  return `cannot start the server on ${where}: ${msg}`;
}
