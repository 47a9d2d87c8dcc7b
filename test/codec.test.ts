import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { encodeValue } from "../src/core/codec.ts";
import { decodeValue } from "../src/core/codec-decode.ts";
import { CodecError, Msg, ResourceExhaustedError } from "../src/index.ts";
import { DEFAULT_LIMITS } from "../src/core/limits.ts";

const rt = <T>(v: T): T => decodeValue(encodeValue(v)) as T;

describe("codec", () => {
  test("round-trips JSON values, undefined, -0, NaN, Infinity and BigInt", () => {
    const v = { s: "x", n: 1.5, b: true, z: null, u: undefined, arr: [1, undefined, "a"], neg0: -0, nan: NaN, inf: -Infinity, big: -(10n ** 40n) };
    const out = rt(v);
    expect(out).toEqual(v);
    expect(Object.is(out.neg0, -0)).toBe(true);
    expect("u" in out).toBe(true);
  });

  test("round-trips Map, Set, Date, RegExp, typed arrays, ArrayBuffer, DataView and Buffer", () => {
    const v = {
      m: new Map<unknown, unknown>([[1, "a"], ["k", new Set([1, 2])]]),
      d: new Date(1234567),
      bad: new Date(NaN),
      re: /a+b/gi,
      u8: new Uint8Array([1, 2, 3]),
      f64: new Float64Array([1.5, -2]),
      i16: new Int16Array([-3, 4]),
      b64: new BigInt64Array([5n]),
      ab: new Uint8Array([9, 8]).buffer,
      dv: new DataView(new Uint8Array([7]).buffer),
      buf: Buffer.from("hey"),
    };
    const out = rt(v);
    expect(out.m).toEqual(v.m);
    expect(out.d.getTime()).toBe(1234567);
    expect(Number.isNaN(out.bad.getTime())).toBe(true);
    expect(out.re.source).toBe("a+b");
    expect(out.re.flags).toBe("gi");
    expect(out.u8).toEqual(v.u8);
    expect(out.f64).toBeInstanceOf(Float64Array);
    expect([...out.f64]).toEqual([1.5, -2]);
    expect([...out.i16]).toEqual([-3, 4]);
    expect([...out.b64]).toEqual([5n]);
    expect(new Uint8Array(out.ab)).toEqual(new Uint8Array([9, 8]));
    expect(out.dv.getUint8(0)).toBe(7);
    expect(Buffer.isBuffer(out.buf)).toBe(true);
    expect(out.buf.toString()).toBe("hey");
  });

  test("round-trips an Error with name, message, stack and cause", () => {
    const e = new TypeError("outer", { cause: new RangeError("inner") });
    const out = rt(e);
    expect(out).toBeInstanceOf(TypeError);
    expect(out.message).toBe("outer");
    expect(out.stack).toBe(e.stack!);
    expect(out.cause).toBeInstanceOf(RangeError);
    expect((out.cause as Error).message).toBe("inner");
    class MyError extends Error {
      override name = "MyError";
    }
    const mine = rt(new MyError("custom"));
    expect(mine.name).toBe("MyError");
  });

  test("round-trips Msg with its id and timestamp", () => {
    const m = new Msg({ name: "a", role: "user", content: [{ type: "text", text: "hi" }], metadata: { value: new Map([[1, 2]]) }, url: "x.png" });
    const out = rt(m);
    expect(out).toBeInstanceOf(Msg);
    expect(out.id).toBe(m.id);
    expect(out.timestamp).toBe(m.timestamp);
    expect(out.metadata).toEqual({ value: new Map([[1, 2]]) });
    expect(out.url).toBe("x.png");
  });

  test("a user object with a $as key is not mistaken for a tag", () => {
    const v = { $as: "ref", oid: "x", nested: { $as: "u" } };
    expect(rt(v)).toEqual(v);
  });

  test("an instance of an ordinary class is refused with a CodecError naming the class and the fix", () => {
    class Point {
      x = 1;
      y = "two";
      norm(): number {
        return 1;
      }
    }
    const err = (() => {
      try {
        encodeValue({ at: new Point() });
      } catch (e) {
        return e as Error;
      }
      throw new Error("encoded a class instance silently");
    })();
    expect(err).toBeInstanceOf(CodecError);
    expect(err.message).toContain("an instance of class Point cannot be sent as a value");
    expect(err.message).toContain("{ ...point }");
    expect(err.message).toContain("toJSON()");
    expect(err.message).toContain("point.toDist()");
  });

  test("a class with toJSON() sends what toJSON returns, like JSON.stringify", () => {
    class Money {
      constructor(readonly cents: bigint) {}
      toJSON(): { cents: bigint; currency: string } {
        return { cents: this.cents, currency: "EUR" };
      }
    }
    expect(rt({ price: new Money(1999n) }) as unknown).toEqual({ price: { cents: 1999n, currency: "EUR" } });
    expect(rt(new URL("https://example.com/a?b=1")) as unknown).toBe("https://example.com/a?b=1");
  });

  test("local generators, async generators, iterators and async iterables are refused: only a RemoteStream travels", () => {
    function* gen(): Generator<number> {
      yield 1;
    }
    async function* agen(): AsyncGenerator<number> {
      yield 1;
    }
    expect(() => encodeValue(gen())).toThrow(/a generator .*only a RemoteStream/);
    expect(() => encodeValue([agen()])).toThrow(/an async generator .*only a RemoteStream/);
    expect(() => encodeValue(new Map([[1, 2]]).values())).toThrow(/an iterator \(Map Iterator\)/);
    expect(() => encodeValue({ s: new ReadableStream() })).toThrow(/an async iterable \(ReadableStream\)/);
    expect(() => encodeValue(gen())).toThrow(CodecError);
  });

  test("an object with a custom prototype is refused; an Object.create(null) object travels", () => {
    expect(() => encodeValue(Object.create({ inherited: 1 }))).toThrow(/an object with a custom prototype cannot be sent/);
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1, m: new Map([[1, 2]]) });
    expect(rt(bare)).toEqual({ a: 1, m: new Map([[1, 2]]) });
  });

  test("Error subclasses and Msg subclasses still travel as Error and Msg", () => {
    class Oops extends RangeError {}
    class Note extends Msg {}
    expect(rt(new Oops("x"))).toBeInstanceOf(RangeError);
    expect(rt(new Note({ name: "n", content: "c" }))).toBeInstanceOf(Msg);
  });

  test("refuses functions, symbols, promises and cycles with a CodecError", () => {
    expect(() => encodeValue({ f: () => 1 })).toThrow(CodecError);
    expect(() => encodeValue([Symbol("s")])).toThrow(CodecError);
    expect(() => encodeValue(Promise.resolve(1))).toThrow(/await it first/);
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    expect(() => encodeValue(cyc)).toThrow(/cyclic/);
  });

  test("a shared (non-cyclic) sub-object is encoded twice, not refused", () => {
    const shared = { a: 1 };
    expect(rt({ x: shared, y: shared })).toEqual({ x: { a: 1 }, y: { a: 1 } });
  });

  test("decoding a prototype-pollution payload leaves Object.prototype untouched", () => {
    const payload = JSON.parse('{"__proto__": {"polluted": true}, "a": {"__proto__": {"polluted2": true}}}');
    const out = rt(payload) as Record<string, unknown>;
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted2).toBeUndefined();
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.hasOwn(out, "__proto__")).toBe(true);
    const crafted = new TextEncoder().encode('{"constructor":{"prototype":{"polluted3":1}},"__proto__":{"x":1}}');
    const frame = new Uint8Array(4 + crafted.length);
    new DataView(frame.buffer).setUint32(0, crafted.length, true);
    frame.set(crafted, 4);
    decodeValue(frame);
    expect(({} as Record<string, unknown>).polluted3).toBeUndefined();
  });

  test("nesting at the depth limit is accepted and one past it is refused", () => {
    const nest = (n: number) => {
      let v: unknown = 0;
      for (let i = 0; i < n; i++) v = [v];
      return v;
    };
    expect(() => encodeValue(nest(DEFAULT_LIMITS.maxDepth - 1))).not.toThrow();
    expect(() => encodeValue(nest(DEFAULT_LIMITS.maxDepth + 1))).toThrow(/deeper than/);
    const deepJson = "[".repeat(100_000) + "]".repeat(100_000);
    const body = new TextEncoder().encode(deepJson);
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length, true);
    frame.set(body, 4);
    expect(() => decodeValue(frame)).toThrow(CodecError);
  });

  test("a value at the size limit encodes; one byte more is RESOURCE_EXHAUSTED, both ways", () => {
    const limits = { ...DEFAULT_LIMITS, maxMessageBytes: 1024 };
    const header = encodeValue(new Uint8Array(0), undefined, limits).byteLength;
    const fits = new Uint8Array(1024 - ((header + 7) & ~7));
    const ok = encodeValue(fits, undefined, limits);
    expect(ok.byteLength).toBeLessThanOrEqual(1024);
    expect(() => encodeValue(new Uint8Array(fits.length + 8), undefined, limits)).toThrow(ResourceExhaustedError);
    const big = encodeValue(new Uint8Array(2048));
    expect(() => decodeValue(big, undefined, limits)).toThrow(ResourceExhaustedError);
  });

  test("oversized BigInt strings are refused", () => {
    const digits = "9".repeat(DEFAULT_LIMITS.maxBigIntDigits + 10);
    const body = new TextEncoder().encode(JSON.stringify({ $as: "big", v: digits }));
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length, true);
    frame.set(body, 4);
    expect(() => decodeValue(frame)).toThrow(/BigInt/);
  });

  test("property: any JSON-like value round-trips", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(rt(v)).toEqual(v as never);
      }),
      { numRuns: 300 },
    );
  });

  test("property: values of every supported kind round-trip (Map, Set, Date, typed arrays, BigInt, null-prototype objects)", () => {
    const settings = { withMap: true, withSet: true, withDate: true, withTypedArray: true, withBigInt: true, withNullPrototype: true, maxDepth: 4 } as const;
    fc.assert(
      fc.property(fc.anything(settings), (v) => {
        expect(ordered(rt(v))).toEqual(ordered(v) as never);
      }),
      { numRuns: 300 },
    );
  });

  test("fuzz: random and mutated frames either decode or throw a CodecError, never crash or hang", () => {
    const seed = encodeValue({ a: [1, "x", new Map([[1, new Uint8Array([1, 2, 3])]])], m: new Msg({ name: "n" }), d: new Date(0), b: 5n });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(seed.length)).map(([i, b, cut]) => {
            const m = seed.slice(0, Math.max(cut, 1));
            if (i < m.length) m[i] = b;
            return m;
          }),
        ),
        (bytes) => {
          try {
            decodeValue(bytes);
          } catch (e) {
            expect(e).toBeInstanceOf(CodecError);
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});

/**
 * `v` with Maps and Sets as arrays of their entries, in order: a Map may hold two different
 * keys that are deep-equal (`{}` and `{}`), which a deep-equality matcher cannot pair up.
 */
/**
 * A comparable form of a value: objects become their [key, value] entries (an own "__proto__"
 * key then compares like any other; a plain or null prototype is not part of the value), and
 * dates their time (an invalid date as "NaN", which toEqual would not match with itself).
 */
function ordered(v: unknown): unknown {
  if (v instanceof Map) return { map: [...v].map(([k, x]) => [ordered(k), ordered(x)]) };
  if (v instanceof Set) return { set: [...v].map(ordered) };
  if (Array.isArray(v)) return v.map(ordered);
  if (v instanceof Date) return { date: Number.isNaN(v.getTime()) ? "NaN" : v.getTime() };
  if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
    return { entries: Object.keys(v).map((k) => [k, ordered((v as Record<string, unknown>)[k])]) };
  }
  return v;
}
