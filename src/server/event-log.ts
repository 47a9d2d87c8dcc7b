/**
 * The server's event log, as a servicer observer: agents created and deleted, failed calls
 * (class, method, code), and an access line per request at debug level. Lines go through
 * consola's shared instance (tag `as-server`), whose level and reporter the CLI sets
 * (`--log-level`, `--log-format json|pretty`, `AS_LOG_LEVEL`); each carries `fields` that the
 * JSON format prints as keys. Never an argument value, a token or a result.
 */
import { consola, LogLevels } from "consola";
import type { Request, Response } from "../core/protocol.ts";
import type { ServicerObserver, TaskInfo } from "./observer.ts";
import type { IsolationEvents } from "./isolation.ts";
import type { Outcome } from "./pool/types.ts";

type Line = { message: string; fields: Record<string, unknown> };

/**
 * Names in a line come from the wire (a method name, a class, an error message): control
 * characters are escaped and length capped, so a peer cannot forge lines or write raw bytes
 * into the log.
 */
function clean(o: Line): Line {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o.fields)) fields[k] = typeof v === "string" ? safe(v) : v;
  return { message: safe(o.message, 2000), fields };
}

function safe(s: string, max = 256): string {
  const t = s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** Tagged afresh at each event: the CLI may set consola's level and reporter after this module loaded. */
const log = {
  info: (o: Line) => consola.withTag("as-server").info(clean(o)),
  warn: (o: Line) => consola.withTag("as-server").warn(clean(o)),
  // Checked first: creations log at debug by the hundred thousand, and a tagged instance plus
  // a cleaned line per creation were most of what the log cost when debug is off.
  debug: (o: Line) => void (consola.level >= LogLevels.debug && consola.withTag("as-server").debug(clean(o))),
  error: (o: Line) => consola.withTag("as-server").error(clean(o)),
};

/** An observer that logs what the servicer of `serverId` does. */
export function eventLog(serverId: string): ServicerObserver {
  return {
    started() {},
    answered(req: Request, res: Response, seconds: number, cls: string | undefined) {
      const code = res.t === "error" ? res.error.code : "OK";
      const debug = consola.level >= LogLevels.debug;
      if (debug) {
        const target = req.t === "call" ? `${cls ?? "?"}.${req.name}` : "oid" in req ? req.oid : "";
        log.debug({ message: `${req.t} ${target} ${code} ${(seconds * 1000).toFixed(2)} ms`, fields: { event: "access", serverId, kind: req.t, cls, code, ms: seconds * 1000 } });
      }
      // Creations and deletions come by the hundred thousand in simulations: debug, like access lines.
      if (req.t === "create" && code === "OK") {
        if (debug) log.debug({ message: `agent created: ${req.cls} ${req.oid}`, fields: { event: "agent.created", serverId, cls: req.cls, oid: req.oid } });
      } else if (req.t === "delete" && code === "OK" && cls !== undefined) {
        if (debug) log.debug({ message: `agent deleted: ${cls} ${req.oid}`, fields: { event: "agent.deleted", serverId, cls, oid: req.oid } });
      } else if (req.t === "deleteAll" && code === "OK") log.info({ message: "all agents deleted", fields: { event: "agent.deletedAll", serverId } });
      else if (req.t === "call") {
        if (res.t === "error" && res.error.retryAfterMs === undefined) callFailed(serverId, cls ?? "?", req.name, req.oid, res.error.code, res.error.message);
        // A momentary refusal (full result pool) is flow control the client absorbs, not a failure.
        else if (res.t === "error") log.debug({ message: `call refused for now: ${cls ?? "?"}.${req.name} ${res.error.code}`, fields: { event: "call.backpressure", serverId, cls, method: req.name, code: res.error.code } });
      } else if (res.t === "error" && req.t === "create") {
        log.warn({ message: `agent creation failed: ${req.cls} ${req.oid}: ${res.error.code} ${res.error.message}`, fields: { event: "agent.createFailed", serverId, cls: req.cls, oid: req.oid, code: res.error.code } });
      }
    },
    taskDone(_task: string, o: Outcome, call: TaskInfo) {
      if (!o.ok) callFailed(serverId, call.cls, call.method, undefined, o.error.code, o.error.message);
    },
  };
}

function callFailed(serverId: string, cls: string, method: string, oid: string | undefined, code: string, message: string): void {
  log.warn({ message: `call failed: ${cls}.${method} ${code}: ${message.split("\n")[0]}`, fields: { event: "call.failed", serverId, cls, method, ...(oid ? { oid } : {}), code } });
}

/**
 * Crashes and restarts of the agents an `--isolate` server supervises (class, oid, reason),
 * each also counted by `restarted` (the metrics' `actorscope_restarts_total{class}`).
 */
export function supervisionLog(serverId: string, restarted: (cls: string) => void): IsolationEvents {
  return {
    crashed: (cls, oid, why) => log.warn({ message: `agent crashed: ${cls} ${oid}: ${why}`, fields: { event: "agent.crashed", serverId, cls, oid, reason: why } }),
    restarted: (cls, oid, info) => {
      restarted(cls);
      const reason = info.lastRestartReason ?? "";
      log.info({ message: `agent restarted: ${cls} ${oid} (restart ${info.restarts}): ${reason}`, fields: { event: "agent.restarted", serverId, cls, oid, restarts: info.restarts, reason, ...(info.pid === undefined ? {} : { pid: info.pid }) } });
    },
    gaveUp: (cls, oid, why) => log.error({ message: `agent not restarted: ${cls} ${oid}: ${why}`, fields: { event: "agent.dead", serverId, cls, oid, reason: why } }),
  };
}

let authFailures = 0;
let authLoggedAt = 0;

/**
 * A request refused for a wrong or missing token (never the token itself). At most one line a
 * second, counting the refusals since the last line, so a flood of bad requests cannot flood
 * the log.
 */
export function authFailed(method: string, peer: string): void {
  authFailures++;
  const now = Date.now();
  if (now - authLoggedAt < 1000) return;
  authLoggedAt = now;
  const n = authFailures;
  authFailures = 0;
  log.warn({ message: `refused ${n} request(s) with a wrong or missing token (last: ${method} from ${peer})`, fields: { event: "auth.failed", method, peer, count: n } });
}
