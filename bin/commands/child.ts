/**
 * The hidden `as-server __child <json>` entry: the compiled binary's child server. Child mode
 * spawns `[process.execPath, "__child", json]` when running compiled (src/rpc/child-server.ts),
 * so the binary alone serves `toDist()` children. Kept free of citty and consola: a child starts
 * on every `toDist()` and must load only what it serves with.
 */
import { installRuntimeModule, isCompiled } from "../runtime-module.ts";

/** Run a child server from its JSON config (argv after `__child`). */
export async function runChildCommand(argv: readonly string[]): Promise<void> {
  const json = argv[0];
  if (json === undefined || argv.length !== 1) {
    process.stderr.write("as-server: __child takes exactly one argument, the child config as JSON\n");
    process.exit(2);
  }
  // The child imports the module defining the class, which imports "actorscope".
  if (isCompiled()) await installRuntimeModule();
  const { runChild } = await import("../../src/server/child/run.ts");
  await runChild(json);
}
