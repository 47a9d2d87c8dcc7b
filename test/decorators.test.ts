import { describe, expect, test } from "bun:test";
import { AgentBase, Distributable, Msg, asyncFunc, dist, syncFunc } from "../src/index.ts";
import { CTOR_ARGS } from "../src/core/decorators.ts";
import { classInfo, entryOf, findClass } from "../src/core/registry.ts";
import { Legacy } from "./fixtures/legacy-decorators.ts";

@dist
class Base extends Distributable {
  constructor(readonly a: number) {
    super();
  }
  @asyncFunc
  slow(): number {
    return 1;
  }
  fast(): number {
    return 2;
  }
  _hidden(): number {
    return 3;
  }
}

@dist
class Derived extends Base {
  constructor(
    readonly b: string,
    readonly c: boolean,
  ) {
    super(7);
  }
  override slow(): number {
    return 10;
  }
  @syncFunc
  override fast(): number {
    return 20;
  }
  @asyncFunc
  extra(): number {
    return 30;
  }
}

@dist
class Talker extends AgentBase {
  override reply(x?: Msg): Msg {
    return x!;
  }
}

describe("decorators and registry", () => {
  test("@dist registers the class by name with the module that defines it and keeps its name", () => {
    expect(Base.name).toBe("Base");
    expect(entryOf(Base)?.name).toBe("Base");
    expect(entryOf(Base)?.module).toEndWith("/test/decorators.test.ts");
    expect(findClass("Derived")?.cls).toBe(Derived);
    expect(new Derived("x", true)).toBeInstanceOf(Base);
  });

  test("@dist captures the most-derived constructor's arguments", () => {
    expect((new Base(1) as unknown as Record<symbol, unknown>)[CTOR_ARGS]).toEqual([1]);
    expect((new Derived("x", false) as unknown as Record<symbol, unknown>)[CTOR_ARGS]).toEqual(["x", false]);
  });

  test("public methods are remote, async-ness is inherited by overrides, _ names are not remote", () => {
    const b = classInfo(Base);
    expect(b.methods.sort()).toEqual(["fast", "slow"]);
    expect(b.async).toEqual(["slow"]);
    const d = classInfo(Derived);
    expect(d.methods.sort()).toEqual(["extra", "fast", "slow"]);
    expect(d.async.sort()).toEqual(["extra", "slow"]);
    expect(classInfo(Base).async).toEqual(["slow"]);
  });

  test("AgentBase.reply and call stay async in subclasses", () => {
    const t = classInfo(Talker);
    expect(t.async.sort()).toEqual(["call", "reply"]);
    expect(t.methods).toContain("observe");
    expect(t.methods).not.toContain("toDist");
  });

  test("the legacy decorator call shape marks methods too", () => {
    const info = classInfo(Legacy);
    expect(info.async).toEqual(["work"]);
    expect(info.methods.sort()).toEqual(["other", "work"]);
    expect(entryOf(Legacy)?.name).toBe("LegacyBase");
  });

  test("every object gets a 32-hex oid", () => {
    expect(new Base(1).oid).toMatch(/^[0-9a-f]{32}$/);
    expect(new Base(1).oid).not.toBe(new Base(1).oid);
  });
});
