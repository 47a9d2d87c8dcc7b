/**
 * The answer of an async call that asked for a hold (`CallRequest.holdMs`): the task's value
 * when it succeeds within `holdMs` of starting — one round trip, no `wait` — else its task id.
 * A task still queued for a capacity slot is waited for too, but never longer than
 * `QUEUED_HOLD_FACTOR × holdMs` from its arrival: under load (more calls in flight than the
 * server's capacity) fast tasks still answer inline, and a held answer stays bounded. A
 * failure is always answered with the task id (its error is read with a `wait`, like any
 * task's), so an `error` answer to a call keeps meaning "refused".
 *
 * A solo task (`CallRequest.solo`) is not in the pool while it is held: `keep` puts it there
 * when it is answered with its id (and throws ALREADY_EXISTS for a taken id).
 */
import type { Response } from "../core/protocol.ts";
import type { Outcome, ResultPool } from "./pool/types.ts";

/** How many holds a queued task may wait from its arrival, in all. */
export const QUEUED_HOLD_FACTOR = 5;

/**
 * Answer `task` per its hold: `value` if it succeeded in time (marked read), else `task`.
 * `startedAt` tells when the task got its capacity slot (undefined while queued).
 */
export async function answerWithin(task: string, outcome: Promise<Outcome>, holdMs: number, pool: ResultPool, startedAt: () => number | undefined, keep?: (o: Outcome | Promise<Outcome>) => void): Promise<Response> {
  if (!keep && (!pool.readNow || holdMs <= 0)) return { t: "task", task };
  const cap = performance.now() + holdMs * QUEUED_HOLD_FACTOR;
  let o: Outcome | undefined;
  for (;;) {
    const until = Math.min(cap, (startedAt() ?? performance.now()) + holdMs);
    const left = until - performance.now();
    if (left <= 0) break;
    let timer: Timer | undefined;
    o = await Promise.race([outcome, new Promise<undefined>((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
    if (o) break;
  }
  if (keep) {
    // A solo task (not in the pool): a value is answered and never kept; anything else is
    // kept from now on, the outcome of a task still running when it lands.
    if (o?.ok) return { t: "value", value: o.value };
    keep(o ?? outcome);
    return { t: "task", task };
  }
  if (o?.ok && pool.readNow!(task)) return { t: "value", value: o.value };
  return { t: "task", task };
}
