#!/usr/bin/env bun
/**
 * The seed's `dist_server.py`: an agent server that can create WebAgents, for the
 * independent-mode run of dist_main.ts.
 *
 *   bun examples/web-search/dist_server.ts [--host localhost] [--port 12345] [--token T]
 *   bun examples/web-search/dist_main.ts --host localhost --port 12345 [--token T]
 *
 * `as-server start --agent-dir examples/web-search --port 12345` does the same from the CLI.
 */
import { parseArgs } from "node:util";
import { RpcAgentServerLauncher } from "actorscope";
import { WebAgent } from "./web-agent.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "localhost" },
      port: { type: "string", default: "12345" },
      token: { type: "string" },
    },
  });
  const launcher = new RpcAgentServerLauncher({
    host: values.host,
    port: Number(values.port),
    customAgentClasses: [WebAgent],
    ...(values.token ? { token: values.token } : {}),
  });
  await launcher.launch();
  console.log(`agent server listening on ${launcher.host}:${launcher.port} (server id ${launcher.serverId})`);
  const stop = () => void launcher.shutdown();
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  await launcher.waitUntilTerminate();
}
