/**
 * `as-server dashboard (--registry URL | --servers FILE) [--host] [--port] [--token-file]`:
 * serve a live web page of the servers, their agents and calls, until SIGINT/SIGTERM. Prints
 * one line with its URL when ready. Loopback by default; any other address needs an access
 * token (`--token-file`, `--token`, or env AS_DASHBOARD_TOKEN). The agent servers' own token
 * comes from `--server-token-file` or AS_SERVER_TOKEN and never reaches the browser.
 */
import { defineCommand } from "citty";
import { TOKEN_ON_ARGV, UsageError, isLoopback, parseHost, parseNonEmpty, parsePort, readTokenFile } from "../args.ts";
import { log } from "../log.ts";
import type { Dashboard } from "../../src/server/dashboard/server.ts";

let running: Dashboard | undefined;

/** Flags of `as-server dashboard`. */
export const dashboardArgs = {
  registry: { type: "string", description: "Show every server registered in this Redis registry" },
  servers: { type: "string", description: "Show every server of this file (host:port per line)" },
  host: { type: "string", description: "Address the dashboard binds; not loopback needs a token", default: "127.0.0.1" },
  port: { type: "string", description: "Port of the dashboard; 0 picks a free one", default: "12380" },
  "token-file": { type: "string", description: "File holding the access token the browser must give (?token=) (or env AS_DASHBOARD_TOKEN)" },
  token: { type: "string", description: "Access token; visible in ps, prefer --token-file" },
  "server-token-file": { type: "string", description: "File holding the agent servers' token (or env AS_SERVER_TOKEN)" },
} as const;

/** `as-server dashboard`. */
export const dashboard = defineCommand({
  meta: { name: "dashboard", description: "Serve a live web page of the servers" },
  args: dashboardArgs,
  async run({ args }) {
    if ((args.registry === undefined) === (args.servers === undefined)) throw new UsageError("give one of --registry URL or --servers FILE");
    const host = parseHost(args.host);
    const port = parsePort(args.port, "--port", true);
    if (args["token-file"] !== undefined && args.token !== undefined) throw new UsageError("give either --token-file or --token, not both");
    if (args.token !== undefined) log.warn(TOKEN_ON_ARGV);
    const token = args["token-file"] !== undefined ? readTokenFile(args["token-file"]) : args.token !== undefined ? parseNonEmpty(args.token, "--token") : process.env.AS_DASHBOARD_TOKEN || undefined;
    if (!isLoopback(host) && !token) throw new UsageError(`refusing to serve the dashboard on non-loopback ${host} without an access token: give --token-file (or AS_DASHBOARD_TOKEN)`);
    const serverToken = args["server-token-file"] !== undefined ? readTokenFile(args["server-token-file"], "--server-token-file") : process.env.AS_SERVER_TOKEN || undefined;
    let source;
    if (args.registry !== undefined) {
      const url = parseNonEmpty(args.registry, "--registry");
      if (!/^rediss?:\/\//.test(url)) throw new UsageError("--registry must be a redis:// or rediss:// URL");
      source = { registry: url };
    } else {
      const { parseServersFile } = await import("../../src/server/dashboard/collect.ts");
      const file = parseNonEmpty(args.servers, "--servers");
      try {
        source = { servers: parseServersFile(await Bun.file(file).text()) };
      } catch (e) {
        throw new UsageError(`--servers ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    const { serveDashboard } = await import("../../src/server/dashboard/server.ts");
    try {
      running = serveDashboard({ source, host, port, ...(token ? { token } : {}), ...(serverToken ? { serverToken } : {}) });
    } catch (e) {
      throw new Error(/EADDRINUSE|in use/i.test((e as Error).message) ? `cannot listen on ${host}:${port}: the port is already in use (--port 0 picks a free one)` : (e as Error).message);
    }
    log.success(`as-server dashboard at ${running.url}${token ? " (append ?token=<your token>)" : ""}`);
    const stopped = Promise.withResolvers<void>();
    const stop = () => stopped.resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    await stopped.promise;
  },
  async cleanup() {
    const d = running;
    running = undefined;
    await d?.stop();
  },
});
