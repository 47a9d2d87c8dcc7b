/**
 * The "actorscope" module as seen by code the server loads (`--agent-dir` files, modules of
 * child servers). A compiled binary has no node_modules to resolve "actorscope" from, and a
 * copy found on disk (in either mode) would bring its own `Msg` and `AgentBase`, so values
 * and classes would not be the server's own. A `Bun.plugin` virtual module hands such files
 * this server's exports instead (a runtime `onResolve` plugin does not reach those imports;
 * a virtual module does).
 */

let installed = false;

/**
 * Register the virtual module "actorscope" → this binary's `src/index.ts` exports. Call it
 * before importing any user file; installing twice is a no-op.
 */
export async function installRuntimeModule(): Promise<void> {
  if (installed) return;
  installed = true;
  // Loaded here, not at the top, so a plain `as-server --help` does not evaluate the runtime.
  const api: Record<string, unknown> = { ...(await import("../src/index.ts")) };
  Bun.plugin({
    name: "actorscope-runtime",
    setup(build) {
      build.module("actorscope", () => ({ loader: "object", exports: api }));
    },
  });
}
