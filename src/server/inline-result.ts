/**
 * The answer of an async call that asked for a hold (`CallRequest.holdMs`): the task's value
 * when it succeeds within the hold — one round trip, no `wait` — else its task id once the
 * hold ends. A failure is always answered with the task id (its error is read with a `wait`,
 * like any task's), so an `error` answer to a call keeps meaning "refused".
 */
import type { Response } from "../core/protocol.ts";
import type { Outcome, ResultPool } from "./pool/types.ts";

/** Answer `task` per its hold: `value` if it succeeded in time (marked read), else `task`. */
export async function answerWithin(task: string, outcome: Promise<Outcome>, holdMs: number, pool: ResultPool): Promise<Response> {
  if (!pool.readNow || holdMs <= 0) return { t: "task", task };
  let timer: Timer | undefined;
  const o = await Promise.race([outcome, new Promise<undefined>((r) => (timer = setTimeout(r, holdMs)))]);
  clearTimeout(timer);
  if (o?.ok && pool.readNow(task)) return { t: "value", value: o.value };
  return { t: "task", task };
}
