#!/usr/bin/env bun
/**
 * `as-server`: start, stop and inspect actorscope agent servers (DESIGN §4).
 *
 * @example
 * as-server start --port 12310 --agent-dir ./agents --model-config-path models.json
 * as-server status --port 12310
 * as-server stop --port 12310
 *
 * The hidden `__child <json>` subcommand is the compiled binary's child server; it is routed
 * before the CLI loads, so a child never pays for citty, consola or the launcher.
 */
export {};

const argv = process.argv.slice(2);
if (argv[0] === "__child") {
  const { runChildCommand } = await import("./commands/child.ts");
  await runChildCommand(argv.slice(1));
} else {
  const { main } = await import("./main.ts");
  await main(argv);
}
