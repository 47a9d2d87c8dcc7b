/**
 * The hidden `as-server __child` entry: the compiled binary's child server. Child mode
 *  spawns `[process.execPath, "__child"]` (config in `AS_CHILD_CONFIG`) when running compiled (src/client/child-server.ts),
 * so the binary alone serves `toDist()` children. Kept free of citty and consola: a child starts
 * on every `toDist()` and must load only what it serves with.
 */
import { installRuntimeModule } from "../runtime-module.ts";
import { isCompiled } from "../../src/client/spawn.ts";

/**
 * Run a child server from its JSON config, taken from `AS_CHILD_CONFIG` only: never from argv,
 * which every local user can read (`ps`) and which may carry model configs with API keys.
 */
export async function runChildCommand(argv: readonly string[]): Promise<void> {
  const { takeChildConfig } = await import("../../src/core/child-config.ts");
  const json = await takeChildConfig();
  if (json === undefined || argv.length > 0) {
    process.stderr.write("as-server: __child takes no arguments; its config comes in AS_CHILD_CONFIG\n");
    process.exit(2);
  }
  // The child imports the module defining the class, which imports "actorscope".
  if (isCompiled()) await installRuntimeModule();
  const { childMain } = await import("../../src/server/child/run.ts");
  await childMain(json);
}
