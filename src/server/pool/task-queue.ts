/**
 * A FIFO of task ids for the local pool's expiry and eviction orders. Removal from the middle
 * is lazy: each slot carries the sequence number its entry had when queued, and a slot whose
 * entry has moved on (read again, dropped) is skipped when it reaches the front. Cheaper than
 * the insertion-ordered Maps it replaces: a push is two array writes, where a Map paid a hash
 * insert and, for every move, a delete whose tombstone later iterations walked past.
 */
export class TaskQueue {
  #tasks: Array<string | undefined> = [];
  #seqs: number[] = [];
  #head = 0;

  /** Slots held, live or stale. */
  get length(): number {
    return this.#tasks.length - this.#head;
  }

  push(task: string, seq: number): void {
    this.#tasks.push(task);
    this.#seqs.push(seq);
  }

  /** The front slot, without taking it. */
  peek(): { task: string; seq: number } | undefined {
    if (this.#head >= this.#tasks.length) return undefined;
    return { task: this.#tasks[this.#head]!, seq: this.#seqs[this.#head]! };
  }

  /** Take the front slot (the queue shrinks its arrays once half of them is taken). */
  shift(): void {
    if (this.#head >= this.#tasks.length) return;
    this.#tasks[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#tasks.length) this.#compact(() => true);
  }

  /** Keep only the slots `live` says are current (a sweep over every slot). */
  retain(live: (task: string, seq: number) => boolean): void {
    this.#compact(live);
  }

  #compact(live: (task: string, seq: number) => boolean): void {
    const tasks: string[] = [];
    const seqs: number[] = [];
    for (let i = this.#head; i < this.#tasks.length; i++) {
      const t = this.#tasks[i]!;
      if (live(t, this.#seqs[i]!)) {
        tasks.push(t);
        seqs.push(this.#seqs[i]!);
      }
    }
    this.#tasks = tasks;
    this.#seqs = seqs;
    this.#head = 0;
  }
}
