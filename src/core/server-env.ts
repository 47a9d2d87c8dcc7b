/**
 * Settings a server process starts with, read by Bun's allocator before any of our code runs:
 * so they go into the environment of every server process we start — child servers, spares,
 * `launch({ inSubprocess: true })` servers — and `as-server start` runs itself again with them
 * (`src/server/reexec.ts`) when it was started without.
 *
 * `MIMALLOC_PURGE_DELAY=-1`: mimalloc keeps the memory it freed instead of handing it back to
 * the kernel and faulting it in again moments later. A server is idle between batches of
 * requests; measured with 4 servers × 100,000 agents on 2 cores, the default cost half a page
 * fault and 0.07 `madvise` per call — 34–47 µs of server CPU a call, 8–12 µs with the setting
 * (BENCHMARKS.md, "The allocator"). The price is resident memory: a server keeps its high-water
 * mark (+30–50 MB on those servers). An operator who prefers the default sets the variable
 * (any value, e.g. `MIMALLOC_PURGE_DELAY=10`) and it is left as it is.
 */

/** The settings, each added only where the environment does not set it already. */
export const SERVER_START_ENV: Readonly<Record<string, string>> = { MIMALLOC_PURGE_DELAY: "-1" };

/**
 * Names of the settings a parent added (not its own), for the server to remove from its
 * `process.env` once started, so processes it spawns do not inherit them.
 */
export const START_ENV_ADDED = "AS_START_ENV_ADDED";

/**
 * `base` with `settings` added where unset, and the list of what was added under
 * `START_ENV_ADDED` (read back by `dropAddedStartEnv`).
 */
export function withStartEnv(base: Record<string, string | undefined>, settings: Readonly<Record<string, string>> = SERVER_START_ENV): Record<string, string | undefined> {
  const added = Object.keys(settings).filter((k) => base[k] === undefined);
  const env: Record<string, string | undefined> = { ...base };
  for (const k of added) env[k] = settings[k];
  env[START_ENV_ADDED] = added.join(",");
  return env;
}

/**
 * Remove from `process.env` the start settings our parent added (they did their work at start);
 * only names of `settings`, whatever the list says.
 */
export function dropAddedStartEnv(settings: Readonly<Record<string, string>> = SERVER_START_ENV): void {
  for (const k of process.env[START_ENV_ADDED]?.split(",") ?? []) if (Object.hasOwn(settings, k)) delete process.env[k];
  delete process.env[START_ENV_ADDED];
}
