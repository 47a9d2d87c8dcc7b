/**
 * Outcomes the Redis pool keeps in this server's memory, beside Redis:
 * - **unsent**: finished while Redis was away (or while its write failed): the only copy.
 *   Written as soon as Redis is back, and never dropped before that: the pool refuses new
 *   tasks instead (running + unsent ≤ maxPoolSize), so this never outgrows the bound;
 * - **writing**: the write is on its way; readers here are answered from memory meanwhile;
 * - **backup**: written, but nobody read it through this server yet. A Redis without
 *   persistence forgets everything when it restarts; this copy answers the reader anyway and
 *   is written back (SET NX) after a reconnect. Backups are a cache: the oldest are dropped
 *   past `maxEntries` entries or `maxBackupBytes` bytes (Redis still holds the result).
 *
 * The first read through this server ends a backup (the result stays in Redis and can be
 * read again there); a release ends any state.
 */
import type { Outcome } from "./types.ts";

/** Where a held outcome stands. */
export type HeldState = "writing" | "unsent" | "backup";

/** One outcome held in memory. */
export interface Held {
  outcome: Outcome;
  /** The Redis entry (tag + body), built once. */
  entry: Buffer;
  /** `Date.now()` at which the result expires (in Redis and here). */
  expiresAt: number;
  state: HeldState;
  /** Read through this server while writing/unsent: dropped (not kept as a backup) once written. */
  read: boolean;
  /** Released by its owner while writing/unsent: deleted from Redis once written. */
  released: boolean;
}

/** Limits of `HeldOutcomes`. */
export interface HeldLimits {
  /** Most outcomes held, of every state (backups make room first). */
  maxEntries: number;
  /** Most bytes held as backups. */
  maxBackupBytes: number;
}

/** The outcomes a Redis pool holds in memory, by task, oldest first. */
export class HeldOutcomes {
  readonly #byTask = new Map<string, Held>();
  /** Backups in the order they were written (= expiry order, = drop order). */
  readonly #backups = new Map<string, Held>();
  #backupBytes = 0;
  #unsent = 0;
  readonly #limits: HeldLimits;

  constructor(limits: HeldLimits) {
    this.#limits = limits;
  }

  /** Outcomes whose only copy is here (unsent). */
  get unsentCount(): number {
    return this.#unsent;
  }

  get size(): number {
    return this.#byTask.size;
  }

  get(task: string): Held | undefined {
    const h = this.#byTask.get(task);
    if (h && h.expiresAt <= Date.now()) {
      this.delete(task);
      return undefined;
    }
    return h;
  }

  /** Hold a finished outcome whose write is starting. */
  add(task: string, outcome: Outcome, entry: Buffer, expiresAt: number): Held {
    this.delete(task);
    const h: Held = { outcome, entry, expiresAt, state: "writing", read: false, released: false };
    this.#byTask.set(task, h);
    this.#makeRoom();
    return h;
  }

  /** The write failed: `h` is now the only copy until Redis is back. */
  markUnsent(task: string, h: Held): void {
    if (this.#byTask.get(task) !== h || h.state === "unsent") return;
    this.#leave(task, h);
    h.state = "unsent";
    this.#unsent++;
  }

  /**
   * The write landed: keep `h` as a backup unless it was read or released meanwhile (then
   * it is dropped). Returns whether it was released (the caller deletes it from Redis).
   */
  markWritten(task: string, h: Held): boolean {
    if (this.#byTask.get(task) !== h) return h.released;
    if (h.read || h.released) {
      this.delete(task);
      return h.released;
    }
    this.#leave(task, h);
    h.state = "backup";
    this.#backups.set(task, h);
    this.#backupBytes += h.entry.byteLength;
    this.#makeRoom();
    return false;
  }

  /** Read through this server: a backup ends here, others end once written. */
  markRead(task: string, h: Held): void {
    if (h.state === "backup") this.delete(task);
    else h.read = true;
  }

  delete(task: string): void {
    const h = this.#byTask.get(task);
    if (!h) return;
    this.#leave(task, h);
    this.#byTask.delete(task);
  }

  /** Unsent outcomes, for the write after a reconnect (expired ones are dropped). */
  unsent(): Array<[string, Held]> {
    return this.#inState("unsent");
  }

  /** Backups, for the restore after a reconnect (expired ones are dropped). */
  backups(): Array<[string, Held]> {
    return this.#inState("backup");
  }

  #inState(state: HeldState): Array<[string, Held]> {
    const now = Date.now();
    const out: Array<[string, Held]> = [];
    for (const [task, h] of [...this.#byTask]) {
      if (h.state !== state) continue;
      if (h.expiresAt <= now) this.delete(task);
      else out.push([task, h]);
    }
    return out;
  }

  /** Drop expired backups (they are in written order, so stop at the first live one). */
  sweep(): void {
    const now = Date.now();
    for (const [task, h] of this.#backups) {
      if (h.expiresAt > now) return;
      this.delete(task);
    }
  }

  /** Take `h` out of its state's bookkeeping. */
  #leave(task: string, h: Held): void {
    if (h.state === "unsent") this.#unsent--;
    else if (h.state === "backup" && this.#backups.delete(task)) this.#backupBytes -= h.entry.byteLength;
  }

  /** Drop the oldest backups past the limits (unsent and writing outcomes are never dropped). */
  #makeRoom(): void {
    for (const [task] of this.#backups) {
      if (this.#byTask.size <= this.#limits.maxEntries && this.#backupBytes <= this.#limits.maxBackupBytes) return;
      this.delete(task);
    }
  }
}

/** How many results expire at which second: a count of live results without their ids. */
export class ExpiryCount {
  readonly #bySecond = new Map<number, number>();
  #total = 0;

  add(expiresAt: number): void {
    const second = Math.ceil(expiresAt / 1000);
    this.#bySecond.set(second, (this.#bySecond.get(second) ?? 0) + 1);
    this.#total++;
  }

  remove(expiresAt: number): void {
    const second = Math.ceil(expiresAt / 1000);
    const n = this.#bySecond.get(second);
    if (!n) return;
    if (n === 1) this.#bySecond.delete(second);
    else this.#bySecond.set(second, n - 1);
    this.#total--;
  }

  /** Live results (expired seconds swept first). */
  count(): number {
    const now = Date.now();
    // Insertion order is expiry order (one fixed ttl), so stop at the first live second.
    for (const [second, n] of this.#bySecond) {
      if (second * 1000 > now) break;
      this.#bySecond.delete(second);
      this.#total -= n;
    }
    return this.#total;
  }
}
