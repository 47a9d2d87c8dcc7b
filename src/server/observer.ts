/**
 * The servicer's optional observer: how metrics, the registry's call counts and the event log
 * see what a server does without living inside its core. A servicer without one pays one
 * `undefined` check per request; with one, a few counter updates (bench/metrics.ts measures it).
 */
import type { Request, Response, ServerInfo } from "../core/protocol.ts";
import type { Outcome } from "./pool/types.ts";

/** The call an async task came from. */
export interface TaskInfo {
  cls: string;
  method: string;
  /** `performance.now()` when the call arrived. */
  since: number;
}

/** Hooks the servicer calls; each must be cheap and must never throw. */
export interface ServicerObserver {
  /**
   * A valid request is about to be handled; `cls` as for `answered`. An async call (a `call`
   * with `task`) ends in `taskDone` — which may come before its answer (a call held for an
   * inline result) — unless its answer is a refusal (`error`).
   */
  started(req: Request, cls: string | undefined): void;
  /**
   * A request was answered: `seconds` since `started`; `cls` is the class of the object it
   * named (for `create`, the class asked for), when known.
   */
  answered(req: Request, res: Response, seconds: number, cls: string | undefined): void;
  /** An async call's task finished with `outcome`; `call` says whose it was and since when (`performance.now()`). */
  taskDone(task: string, outcome: Outcome, call: TaskInfo): void;
  /** Figures added to the `info` answer (uptime, call counts). */
  info?(): Partial<ServerInfo>;
}

/** Several observers as one (each called in turn). */
export function observers(list: ReadonlyArray<ServicerObserver | undefined>): ServicerObserver | undefined {
  const all = list.filter((o): o is ServicerObserver => o !== undefined);
  if (all.length <= 1) return all[0];
  return {
    started: (req, cls) => {
      for (const o of all) o.started(req, cls);
    },
    answered: (req, res, s, cls) => {
      for (const o of all) o.answered(req, res, s, cls);
    },
    taskDone: (task, outcome, call) => {
      for (const o of all) o.taskDone(task, outcome, call);
    },
    info: () => Object.assign({}, ...all.map((o) => o.info?.() ?? {})),
  };
}
