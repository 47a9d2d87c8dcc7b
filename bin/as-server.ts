#!/usr/bin/env bun
/**
 * `as-server`: start, stop and inspect actorscope agent servers.
 *
 * @example
 * as-server start --port 12310 --agent-dir ./agents --model-config-path models.json
 * as-server status --port 12310
 * as-server stop --port 12310
 *
 * Hidden subcommands, routed before the CLI loads so they never pay for citty or consola:
 * `__child` is the compiled binary's child server, `__server` the server process of
 * `launch({ inSubprocess: true })` (its config arrives on stdin, never argv). `start` first
 * runs itself again under a server's start settings when it lacks them (src/server/reexec.ts).
 */
export {};

const argv = process.argv.slice(2);
if (argv[0] === "__child") {
  const { runChildCommand } = await import("./commands/child.ts");
  await runChildCommand(argv.slice(1));
} else if (argv[0] === "__server") {
  const { installRuntimeModule } = await import("./runtime-module.ts");
  await installRuntimeModule();
  const { runServerMain } = await import("../src/server/launcher/main.ts");
  await runServerMain();
} else {
  if (argv[0] === "start") {
    // A server's allocator settings are read at start: run again with them (src/server/reexec.ts).
    const { reexecWithStartEnv } = await import("../src/server/reexec.ts");
    await reexecWithStartEnv();
    const { dropAddedStartEnv } = await import("../src/core/server-env.ts");
    dropAddedStartEnv();
  }
  const { main } = await import("./main.ts");
  await main(argv);
}
