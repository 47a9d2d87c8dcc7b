import { Msg } from "./message.ts";

/**
 * An agent's in-process memory: messages in arrival order, de-duplicated by `id` (so a
 * message echoed back by a broadcast is kept once).
 */
export class Memory {
  readonly #msgs: Msg[] = [];
  readonly #ids = new Set<string>();

  /** Add one message or several; duplicates (same `id`) and null are ignored. */
  add(x: Msg | readonly Msg[] | null | undefined): void {
    if (x == null) return;
    for (const m of Array.isArray(x) ? x : [x as Msg]) {
      if (!(m instanceof Msg)) throw new TypeError("memory holds Msg objects (await an AsyncResult before adding it)");
      if (this.#ids.has(m.id)) continue;
      this.#ids.add(m.id);
      this.#msgs.push(m);
    }
  }

  /** The messages, oldest first (the last `recent` only, if given). */
  get(recent?: number): Msg[] {
    return recent === undefined ? [...this.#msgs] : this.#msgs.slice(-recent);
  }

  /** How many messages are held. */
  size(): number {
    return this.#msgs.length;
  }

  /** Forget everything. */
  clear(): void {
    this.#msgs.length = 0;
    this.#ids.clear();
  }
}
