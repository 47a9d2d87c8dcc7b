#!/usr/bin/env bun
/**
 * The seed's `Example` class: a sync method, basic and composite async results, and a
 * `_protected` method that is not reachable remotely.
 *
 *   bun examples/sync-async/example.ts
 */
import { Distributable, asyncFunc, dist } from "actorscope";

@dist
export class Example extends Distributable {
  // @syncFunc is the default for public methods.
  syncMethod(): string {
    Bun.sleepSync(1000);
    return "sync";
  }

  @asyncFunc
  asyncMethodBasic(): string {
    Bun.sleepSync(1000);
    return "async";
  }

  @asyncFunc
  async asyncMethodComposite(): Promise<{ a: number; b: number; c: string }> {
    await Bun.sleep(1000);
    return { a: 1, b: 2, c: "hello world" };
  }

  _protectedMethod(): string {
    return "protected";
  }
}

if (import.meta.main) {
  await using example = Example.toDist(true);
  // `_`-prefixed members are not part of the remote surface.
  console.log(`protected method reachable: ${"_protectedMethod" in example}`);
  let t = performance.now();
  const syncResult = await example.syncMethod();
  console.log(`sync result: ${syncResult}, sync func cost: ${((performance.now() - t) / 1000).toFixed(3)} s`);
  t = performance.now();
  const asyncBasic = example.asyncMethodBasic();
  const asyncComposite = example.asyncMethodComposite();
  console.log(`async func cost: ${((performance.now() - t) / 1000).toFixed(6)} s`);
  console.log(`async basic result: ${await asyncBasic.result()}`);
  const v = await asyncComposite;
  console.log(`async composite result: a=${v.a} b=${v.b} c=${v.c}`);
}
