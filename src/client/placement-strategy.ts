/**
 * Placement strategies: which member of a group takes the next object.
 *
 * - `"round-robin"`: the live members in turn. No requests of its own.
 * - `"least-loaded"`: the live member with the fewest objects plus async calls in flight, from
 *   its last `getServerInfo()` (`size + pending`), plus what this group placed there since
 *   that figure was read. Stale figures are refreshed in the background; a choice that finds
 *   no figures at all waits for the first probe.
 */
import type { GroupMembers } from "./group-members.ts";
import type { PlacementStrategy } from "./group-options.ts";

/** Picks members for a group, counting each pick as a placement on that member. */
export class Picker {
  readonly strategy: PlacementStrategy;
  readonly #members: GroupMembers;
  /** Where the next turn starts (round-robin; least-loaded's tie-break). */
  #next = 0;

  constructor(members: GroupMembers, strategy: PlacementStrategy) {
    this.#members = members;
    this.strategy = strategy;
  }

  /** Must the next choice wait for a probe (least-loaded, no figures yet)? */
  get mustProbe(): boolean {
    return this.strategy === "least-loaded" && this.#members.unprobed;
  }

  /** The next member not in `tried`, probing first when the strategy needs figures it lacks. */
  async pick(tried: ReadonlySet<number>): Promise<number | undefined> {
    if (this.mustProbe) await this.#members.probe();
    return this.pickNow(tried);
  }

  /** The next member from what is known now; `undefined` when none is left. */
  pickNow(tried: ReadonlySet<number>): number | undefined {
    const now = Date.now();
    const list = this.#members.list;
    const n = list.length;
    const ok = (i: number) => !tried.has(i) && list[i]!.deadUntil <= now;
    let pick: number | undefined;
    if (this.strategy === "round-robin") {
      for (let k = 0; k < n; k++) {
        const i = (this.#next + k) % n;
        if (ok(i)) {
          pick = i;
          break;
        }
      }
    } else {
      // A member with no figures (its probe failed, or it just came back) counts what this
      // group placed there since; the creation itself then shows what is wrong with it.
      let best = Infinity;
      for (let k = 0; k < n; k++) {
        // Ties go to the members in turn, not always to the first.
        const i = (this.#next + k) % n;
        if (!ok(i)) continue;
        const m = list[i]!;
        const load = (m.info ? m.info.size + m.info.pending : 0) + m.placed - m.placedAtProbe;
        if (load < best) {
          best = load;
          pick = i;
        }
      }
      if (this.#members.stale(now)) void this.#members.probe().catch(() => {});
    }
    if (pick !== undefined) {
      this.#next = pick + 1;
      list[pick]!.placed++;
    }
    return pick;
  }
}
