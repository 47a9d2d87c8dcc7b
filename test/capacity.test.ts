import { describe, expect, test } from "bun:test";
import { DeadlineExceededError, ResourceExhaustedError } from "../src/index.ts";
import { Capacity } from "../src/server/capacity.ts";

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe("capacity", () => {
  test("never runs more than the limit at once and runs the rest in FIFO order", async () => {
    const cap = new Capacity(4, 1000);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const g = gate();
    const all = Array.from({ length: 20 }, (_, i) =>
      cap.run(async () => {
        running++;
        peak = Math.max(peak, running);
        order.push(i);
        await g.p;
        running--;
        return i;
      }),
    );
    expect(cap.running).toBe(4);
    expect(cap.queued).toBe(16);
    g.open();
    expect(await Promise.all(all)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(peak).toBe(4);
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  test("past the queue limit calls are refused at once with RESOURCE_EXHAUSTED", async () => {
    const cap = new Capacity(1, 2);
    const g = gate();
    const accepted = [cap.run(() => g.p), cap.run(() => g.p), cap.run(() => g.p)];
    expect(() => cap.admit()).toThrow(ResourceExhaustedError);
    expect(cap.run(() => g.p)).rejects.toBeInstanceOf(ResourceExhaustedError);
    g.open();
    await Promise.all(accepted);
    expect(() => cap.admit()).not.toThrow();
  });

  test("a queued call whose deadline passed is dropped without running", async () => {
    const cap = new Capacity(1, 10);
    const g = gate();
    const first = cap.run(() => g.p);
    let ran = false;
    const late = cap.run(async () => {
      ran = true;
    }, performance.now() + 5);
    await Bun.sleep(20); // let the queued call's deadline pass: the deadline is the subject
    g.open();
    await first;
    expect(late).rejects.toBeInstanceOf(DeadlineExceededError);
    await late.catch(() => {});
    expect(ran).toBe(false);
  });

  test("a failing call frees its slot", async () => {
    const cap = new Capacity(1, 10);
    await cap.run(async () => {
      throw new Error("x");
    }).catch(() => {});
    expect(await cap.run(async () => 5)).toBe(5);
    expect(cap.running).toBe(0);
  });

  test("a call that suspends (waiting on another server) lets a queued call run, and takes its slot back ahead of the queue", async () => {
    const cap = new Capacity(1, 10);
    const outside = gate();
    const started: string[] = [];
    const first = cap.run(async (slot) => {
      started.push("first");
      const resume = slot.suspend();
      await outside.p;
      await resume();
      started.push("first resumed");
      return 1;
    });
    const hold = gate();
    const second = cap.run(async () => {
      started.push("second");
      await hold.p;
      return 2;
    });
    const third = cap.run(async () => {
      started.push("third");
      return 3;
    });
    await Promise.resolve();
    expect(started).toEqual(["first", "second"]);
    expect(cap.running).toBe(1);
    outside.open();
    await Bun.sleep(0);
    // The slot is busy with `second`: `first` waits for it, ahead of `third`.
    expect(started).toEqual(["first", "second"]);
    hold.open();
    expect(await Promise.all([first, second, third])).toEqual([1, 2, 3]);
    expect(started).toEqual(["first", "second", "first resumed", "third"]);
    expect(cap.running).toBe(0);
  });

  test("two overlapping waits of one call give up one slot once and take it back once", async () => {
    const cap = new Capacity(2, 10);
    const a = gate();
    const b = gate();
    const done = cap.run(async (slot) => {
      const r1 = slot.suspend();
      const r2 = slot.suspend();
      expect(cap.running).toBe(0);
      await Promise.all([a.p.then(r1), b.p.then(r2)]);
      expect(cap.running).toBe(1);
      return "ok";
    });
    a.open();
    b.open();
    expect(await done).toBe("ok");
    expect(cap.running).toBe(0);
  });
});
