import { describe, expect, test } from "bun:test";
import { NotFoundError, ResourceExhaustedError } from "../src/index.ts";
import { randomId } from "../src/core/ids.ts";
import { LocalPool } from "../src/server/pool/local.ts";
import type { Outcome } from "../src/server/pool/types.ts";

const ok = (n: number): Outcome => ({ ok: true, value: new Uint8Array([n]) });
/** What `f` threw, or undefined if it returned. */
function thrownOrUndefined(f: () => unknown): unknown {
  try {
    f();
    return undefined;
  } catch (e) {
    return e;
  }
}
/** What `f` threw (the local pool refuses synchronously); fails the test if it returned. */
function thrown(f: () => unknown): any {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a refusal");
}

describe("local result pool", () => {
  test("a result set before the wait is returned at once, and can be read again", async () => {
    await using_(new LocalPool({ maxPoolSize: 10, maxExpireTime: 60 }), async (pool) => {
      const t = randomId();
      await pool.prepare(t);
      await pool.set(t, ok(1));
      expect(await pool.get(t, 0)).toEqual(ok(1));
      expect(await pool.get(t, 1000)).toEqual(ok(1));
    });
  });

  test("a waiter is woken by set, not by a poll", async () => {
    await using_(new LocalPool({ maxPoolSize: 10, maxExpireTime: 60 }), async (pool) => {
      const t = randomId();
      await pool.prepare(t);
      const waits = [pool.get(t, 10_000), pool.get(t, 10_000), pool.get(t, 10_000)];
      const t0 = performance.now();
      await pool.set(t, ok(7));
      const got = await Promise.all(waits);
      expect(performance.now() - t0).toBeLessThan(50);
      expect(got).toEqual([ok(7), ok(7), ok(7)]);
    });
  });

  test("a wait that runs out answers pending", async () => {
    await using_(new LocalPool({ maxPoolSize: 10, maxExpireTime: 60 }), async (pool) => {
      const t = randomId();
      await pool.prepare(t);
      expect(await pool.get(t, 20)).toBe("pending");
      const ctl = new AbortController();
      const w = pool.get(t, 10_000, ctl.signal);
      ctl.abort();
      expect(await w).toBe("pending");
    });
  });

  test("an unknown task is NOT_FOUND, never undefined", async () => {
    await using_(new LocalPool({ maxPoolSize: 10, maxExpireTime: 60 }), async (pool) => {
      expect(pool.get(randomId(), 10)).rejects.toBeInstanceOf(NotFoundError);
    });
  });

  test("an unread result is never evicted: a pool full of unread results refuses new tasks with a retry hint", async () => {
    await using_(new LocalPool({ maxPoolSize: 3, maxExpireTime: 60 }), async (pool) => {
      const ids = [randomId(), randomId(), randomId()];
      for (const [i, t] of ids.entries()) {
        await pool.prepare(t);
        await pool.set(t, ok(i));
      }
      const e = thrown(() => pool.prepare(randomId()));
      expect(e).toBeInstanceOf(ResourceExhaustedError);
      expect(e.retryAfterMs).toBeGreaterThan(0);
      expect(e.message).toContain("maxPoolSize 3");
      for (const [i, t] of ids.entries()) expect(await pool.get(t, 0)).toEqual(ok(i));
    });
  });

  test("past maxPoolSize the least recently read result makes room; unread ones stay", async () => {
    await using_(new LocalPool({ maxPoolSize: 3, maxExpireTime: 60 }), async (pool) => {
      const ids = [randomId(), randomId(), randomId(), randomId(), randomId()];
      for (const [i, t] of ids.slice(0, 3).entries()) {
        await pool.prepare(t);
        await pool.set(t, ok(i));
      }
      expect(await pool.get(ids[1]!, 0)).toEqual(ok(1));
      expect(await pool.get(ids[2]!, 0)).toEqual(ok(2));
      await pool.prepare(ids[3]!);
      expect(pool.size()).toBe(3);
      expect(pool.get(ids[1]!, 0)).rejects.toBeInstanceOf(NotFoundError);
      expect(await pool.get(ids[0]!, 0)).toEqual(ok(0));
      // ids[2] was read before ids[0]: it goes next, once ids[3]'s result takes room.
      await pool.set(ids[3]!, ok(3));
      await pool.prepare(ids[4]!);
      expect(pool.get(ids[2]!, 0)).rejects.toBeInstanceOf(NotFoundError);
      expect(await pool.get(ids[0]!, 0)).toEqual(ok(0));
    });
  });

  test("a read with keep (the reader handed references on) does not make a result evictable", async () => {
    await using_(new LocalPool({ maxPoolSize: 1, maxExpireTime: 60 }), async (pool) => {
      const t = randomId();
      await pool.prepare(t);
      await pool.set(t, ok(5));
      expect(await pool.get(t, 0, undefined, true)).toEqual(ok(5));
      expect(() => pool.prepare(randomId())).toThrow(ResourceExhaustedError);
      expect(await pool.get(t, 0)).toEqual(ok(5));
      await pool.prepare(randomId());
      expect(pool.get(t, 0)).rejects.toBeInstanceOf(NotFoundError);
    });
  });

  test("a released result is freed at once, or as soon as its task finishes", async () => {
    await using_(new LocalPool({ maxPoolSize: 10, maxExpireTime: 60 }), async (pool) => {
      const done = randomId();
      const running = randomId();
      await pool.prepare(done);
      await pool.set(done, ok(1));
      await pool.prepare(running);
      await pool.release(done);
      await pool.release(running);
      await pool.release(randomId());
      expect(pool.size()).toBe(1);
      expect(pool.get(done, 0)).rejects.toBeInstanceOf(NotFoundError);
      await pool.set(running, ok(2));
      expect(pool.size()).toBe(0);
    });
  });

  test("running tasks do not count against the pool: each result they produce is kept, then unread results refuse new tasks", async () => {
    await using_(new LocalPool({ maxPoolSize: 2, maxExpireTime: 60 }), async (pool) => {
      const ids = [randomId(), randomId(), randomId(), randomId()];
      for (const t of ids) await pool.prepare(t);
      for (const [i, t] of ids.entries()) await pool.set(t, ok(i));
      expect(pool.size()).toBe(4);
      expect(() => pool.prepare(randomId())).toThrow(ResourceExhaustedError);
      for (const [i, t] of ids.entries()) expect(await pool.get(t, 0)).toEqual(ok(i));
      await pool.prepare(randomId());
    });
  });

  test("under random prepares, sets, reads and releases it matches a model: same size, same unread count, refusals exactly when full of unread, least recently read evicted first", async () => {
    // A tiny deterministic generator: the same operations every run.
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let round = 0; round < 40; round++) {
      const max = 1 + rnd(20);
      await using_(new LocalPool({ maxPoolSize: max, maxExpireTime: 3600 }), async (pool) => {
        const model = new Map<string, "pending" | "unread" | "read">();
        const readOrder: string[] = [];
        const count = (s: string) => [...model.values()].filter((v) => v === s).length;
        const pick = (want: (s: string) => boolean) => {
          const ts = [...model].filter(([, v]) => want(v)).map(([t]) => t);
          return ts.length ? ts[rnd(ts.length)] : undefined;
        };
        for (let op = 0, n = 0; op < 1500; op++) {
          const k = rnd(10);
          if (k < 4) {
            const t = `t${n++}`;
            const full = count("unread") >= max;
            expect(thrownOrUndefined(() => pool.prepare(t)) !== undefined).toBe(full);
            if (full) continue;
            if (model.size - count("pending") >= max) {
              let evict = Math.max(1, model.size - count("pending") - max + 1 + (max >> 4));
              while (evict-- > 0 && readOrder.length) model.delete(readOrder.shift()!);
            }
            model.set(t, "pending");
          } else if (k < 7) {
            const t = pick((v) => v === "pending");
            if (t) (pool.set(t, ok(1)), model.set(t, "unread"));
          } else {
            const t = pick((v) => v !== "pending");
            if (!t) continue;
            const i = readOrder.indexOf(t);
            if (i >= 0) readOrder.splice(i, 1);
            if (k < 9) {
              expect(pool.readNow(t)).toBe(true);
              model.set(t, "read");
              readOrder.push(t);
            } else {
              await pool.release(t);
              model.delete(t);
            }
          }
          expect(pool.size()).toBe(model.size);
          expect(pool.unreadCount()).toBe(count("unread"));
        }
      });
    }
  });

  test("a task id cannot be prepared twice", async () => {
    await using_(new LocalPool({ maxPoolSize: 2, maxExpireTime: 60 }), async (pool) => {
      const t = randomId();
      await pool.prepare(t);
      const e = thrown(() => pool.prepare(t));
      expect(e.code).toBe("ALREADY_EXISTS");
    });
  });

  test("an expired result is NOT_FOUND", async () => {
    await using_(new LocalPool({ maxPoolSize: 10, maxExpireTime: 0.05 }), async (pool) => {
      const t = randomId();
      await pool.prepare(t);
      await pool.set(t, ok(1));
      expect(await pool.get(t, 0)).toEqual(ok(1));
      await Bun.sleep(80); // the expiry itself is what is under test
      expect(pool.get(t, 0)).rejects.toBeInstanceOf(NotFoundError);
    });
  });
});

async function using_(pool: LocalPool, f: (p: LocalPool) => Promise<void>): Promise<void> {
  try {
    await f(pool);
  } finally {
    await pool.close();
  }
}
