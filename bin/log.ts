/**
 * The CLI's consola instance. The level comes from the environment (`AS_LOG_LEVEL`, a name or
 * a number, else consola's own `CONSOLA_LEVEL`), never from consola's default: that default
 * drops to "warn" under `NODE_ENV=test`, which would hide the listening line that scripts and
 * tests wait for. The plain (basic) reporter is used in CI, under `NO_COLOR`, and whenever
 * stdout or stderr is not a terminal, so piped output stays one parseable line per event
 * with no colour codes.
 */
import { consola, createConsola, LogLevels, type ConsolaInstance, type ConsolaReporter, type LogObject, type LogType } from "consola";
import { formatWithOptions } from "node:util";
import { setChildLogFormat } from "../src/client/child-output.ts";

/** Resolve a log level from `AS_LOG_LEVEL` / `CONSOLA_LEVEL`; info when unset or unreadable. */
export function logLevelFromEnv(env: Record<string, string | undefined> = process.env): number {
  for (const raw of [env.AS_LOG_LEVEL, env.CONSOLA_LEVEL]) {
    const v = raw?.trim().toLowerCase();
    if (!v) continue;
    if (/^-?\d+$/.test(v)) return Number(v);
    if (Object.hasOwn(LogLevels, v)) return LogLevels[v as LogType];
  }
  return LogLevels.info;
}

/**
 * True when output should be plain (no colour, no icons): in CI, with `NO_COLOR` set, or when
 * stdout or stderr is not a terminal (log lines go to both).
 */
export function plainOutput(env: Record<string, string | undefined> = process.env): boolean {
  const ci = env.CI !== undefined && env.CI !== "" && env.CI !== "false" && env.CI !== "0";
  return ci || !!env.NO_COLOR || !process.stdout.isTTY || !process.stderr.isTTY;
}

// tsc picks consola's browser typings (moduleResolution "bundler" has no "node" condition);
// Bun loads the node build, whose createConsola also takes `fancy`.
const options: Parameters<typeof createConsola>[0] & { fancy?: boolean } = {
  level: logLevelFromEnv(),
  fancy: !plainOutput(),
  formatOptions: { date: false },
};
const root: ConsolaInstance = createConsola(options);
// Library code logs through consola's shared instance (e.g. the class loader's "skipped" warning):
// give it the same level and reporter so the CLI's output is uniform.
consola.level = root.level;
consola.setReporters(root.options.reporters);

/** The `as-server` logger; subsystems derive their own with `log.withTag(...)`. */
export const log: ConsolaInstance = root.withTag("as-server");

/** Output formats of `--log-format`. */
export type LogFormat = "pretty" | "json";

/**
 * One JSON object per line: `time`, `level`, `tag`, `msg`, and the event's `fields` (server
 * events carry e.g. `event: "agent.created"`, `cls`, `oid`). Errors and warnings go to stderr,
 * the rest to stdout, as with the pretty format.
 */
export const jsonReporter: ConsolaReporter = {
  log(o: LogObject) {
    const extra = o as LogObject & { fields?: Record<string, unknown> };
    const parts = [o.message, ...o.args].filter((x) => x !== undefined).map((x) => (typeof x === "string" ? x : formatWithOptions({ colors: false, breakLength: Infinity }, x)));
    const line = { time: o.date.toISOString(), level: o.type, tag: o.tag || undefined, msg: parts.join(" "), ...extra.fields };
    (o.level < 2 ? process.stderr : process.stdout).write(`${JSON.stringify(line)}\n`);
  },
};

/** The format from `AS_LOG_FORMAT` (json or pretty), else pretty. */
export function logFormatFromEnv(env: Record<string, string | undefined> = process.env): LogFormat {
  return env.AS_LOG_FORMAT?.trim().toLowerCase() === "json" ? "json" : "pretty";
}

/**
 * Set the level and format of every logger of this process (the CLI's and the library's,
 * which logs through consola's shared instance): `--log-level`, `--log-format`.
 */
export function configureLog(opts: { level?: number; format?: LogFormat }): void {
  if (opts.level !== undefined) root.level = consola.level = log.level = opts.level;
  if (opts.format === "json") for (const c of [root, consola, log]) c.setReporters([jsonReporter]);
  // Lines of child servers and server subprocesses this process spawns follow the same format.
  if (opts.format !== undefined) setChildLogFormat(opts.format);
}

configureLog({ format: logFormatFromEnv() });
