/**
 * What a server process this process spawned prints, and its crashes, as lines of our own
 * output. Each line of a child's stdout or stderr goes to our stdout or stderr tagged with the
 * agent it serves (`[Worker 3f2a9c1e…] line`; a launcher's server subprocess: `[server <id>]`),
 * or, in JSON log format, as one JSON object (`event: "child.output"`, `cls`, `oid`, `stream`,
 * `line`, `pid`). With many children writing at once, the tag says who wrote what; a line is
 * written whole, never interleaved with another child's.
 *
 * No logging library here: the package root must stay light to import (consola is only
 * loaded by servers and the CLI). The CLI tells this module its `--log-format`.
 */

/** Bytes of a child's stderr kept for the error message when it fails. */
export const TAIL_BYTES = 4096;
/** A line longer than this is written in pieces (a child printing without newlines cannot grow our memory). */
const MAX_LINE = 64 * 1024;

/** How child lines and child events are written: tagged text, or one JSON object per line. */
export type ChildLogFormat = "pretty" | "json";

let format: ChildLogFormat = process.env.AS_LOG_FORMAT?.trim().toLowerCase() === "json" ? "json" : "pretty";

/** Set the format of child lines and events (the CLI's `--log-format`; default from `AS_LOG_FORMAT`). */
export function setChildLogFormat(f: ChildLogFormat): void {
  format = f;
}

/** Who a child serves: the agent it was spawned for, or a server subprocess's id. */
export interface ChildLabel {
  cls?: string;
  oid?: string;
  serverId?: string;
}

/** The tag of a pretty line: `Worker 3f2a9c1e…` (long generated oids shortened), or `server <id>`. */
export function tagOf(l: ChildLabel): string {
  if (l.cls !== undefined || l.oid !== undefined) {
    const oid = l.oid === undefined ? "" : l.oid.length > 12 ? ` ${l.oid.slice(0, 8)}…` : ` ${l.oid}`;
    return `${l.cls ?? "?"}${oid}`;
  }
  return l.serverId !== undefined ? `server ${l.serverId}` : "child";
}

/** The fields a JSON line names the child by. */
function fieldsOf(l: ChildLabel, pid: number | undefined): Record<string, unknown> {
  const f: Record<string, unknown> = {};
  if (l.cls !== undefined) f.cls = l.cls;
  if (l.oid !== undefined) f.oid = l.oid;
  if (l.serverId !== undefined) f.serverId = l.serverId;
  if (pid !== undefined) f.pid = pid;
  return f;
}

/**
 * Log an event about a child (a crash, a restart): a line on stderr, prefixed `actorscope:`,
 * or a JSON object with `event` and the child's fields.
 */
export function logChildEvent(event: string, message: string, label: ChildLabel, pid: number | undefined, extra: Record<string, unknown> = {}, level: "warn" | "info" = "warn"): void {
  if (format === "json") {
    const line = { time: new Date().toISOString(), level, tag: "actorscope", msg: message, event, ...fieldsOf(label, pid), ...extra };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  } else process.stderr.write(`actorscope: ${message}\n`);
}

/** Copies a child's stdout and stderr to ours, line by line and tagged; keeps the tail of its stderr for error messages. */
export class ChildOutput {
  #label: ChildLabel;
  #pid: number | undefined;
  #tail = "";

  constructor(label: ChildLabel) {
    this.#label = label;
  }

  /** Tag the lines from now on with `label` (a warm pool's spare, taken for an agent). */
  relabel(label: ChildLabel): void {
    this.#label = label;
  }

  /** The child's process id, named in JSON lines (set once spawned). */
  set pid(pid: number) {
    this.#pid = pid;
  }

  /**
   * Start copying `stream`, the child's `which` (resolves when it ends). `hold` sees each line
   * first and may keep it back (the launcher's ready line) by returning true.
   */
  pump(stream: ReadableStream<Uint8Array>, which: "stdout" | "stderr", hold?: (line: string) => boolean): Promise<void> {
    const dec = new TextDecoder();
    let partial = "";
    const emit = (line: string) => {
      if (!hold?.(line)) this.#write(which, line);
    };
    return (async () => {
      try {
        for await (const chunk of stream) {
          const text = dec.decode(chunk, { stream: true });
          if (which === "stderr") this.#tail = (this.#tail + text).slice(-TAIL_BYTES);
          partial += text;
          let nl: number;
          while ((nl = partial.indexOf("\n")) >= 0) {
            emit(partial.slice(0, nl).replace(/\r$/, ""));
            partial = partial.slice(nl + 1);
          }
          while (partial.length > MAX_LINE) {
            emit(partial.slice(0, MAX_LINE));
            partial = partial.slice(MAX_LINE);
          }
        }
      } catch {
        // The child is gone; its exit is reported elsewhere.
      }
      const rest = partial + dec.decode();
      if (rest) emit(rest);
    })();
  }

  /** What was kept of stderr, trimmed. */
  get text(): string {
    return this.#tail.trim();
  }

  /** The last `n` lines kept of stderr. */
  lastLines(n = 5): string {
    return this.text.split("\n").slice(-n).join("\n");
  }

  #write(which: "stdout" | "stderr", line: string): void {
    const to = which === "stdout" ? process.stdout : process.stderr;
    if (format === "json") {
      const o = { time: new Date().toISOString(), level: "info", tag: "child", msg: line, event: "child.output", ...fieldsOf(this.#label, this.#pid), stream: which, line };
      to.write(`${JSON.stringify(o)}\n`);
    } else to.write(`[${tagOf(this.#label)}] ${line}\n`);
  }
}
