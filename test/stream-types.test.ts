/**
 * Type-level tests of `Remote<T>` for stream methods (checked by `tsc --noEmit`, which
 * test/typecheck.test.ts runs): generator methods become `(...args) => RemoteStream<Y>`,
 * other methods keep returning AsyncResults.
 */
import { expect, test } from "bun:test";
import type { AsyncResult, Remote, RemoteStream } from "../src/index.ts";
import type { Streamer } from "./fixtures/stream-agents.ts";

/** True when `A` and `B` are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

class Shapes {
  async *tokens(_prompt: string): AsyncGenerator<string> {}
  iterable(): AsyncIterable<Uint8Array> {
    return (async function* () {})();
  }
  plain(): number {
    return 1;
  }
  asyncPlain(): Promise<string[]> {
    return Promise.resolve([]);
  }
  never(): never {
    throw new Error("x");
  }
  anything(): any {
    return 1;
  }
}

type R = Remote<Shapes>;

test("generator and AsyncIterable methods are typed as RemoteStream; others stay AsyncResult", () => {
  assertType<Equal<ReturnType<R["tokens"]>, RemoteStream<string>>>();
  assertType<Equal<Parameters<R["tokens"]>[0], string | AsyncResult<string> | PromiseLike<string>>>();
  assertType<Equal<ReturnType<R["iterable"]>, RemoteStream<Uint8Array>>>();
  assertType<Equal<ReturnType<R["plain"]>, AsyncResult<number>>>();
  assertType<Equal<ReturnType<R["asyncPlain"]>, AsyncResult<string[]>>>();
  assertType<Equal<ReturnType<R["never"]>, AsyncResult<never>>>();
  assertType<Equal<ReturnType<R["anything"]>, AsyncResult<any>>>();
  assertType<Equal<ReturnType<Remote<Streamer>["count"]>, RemoteStream<number>>>();
  // A RemoteStream is what a parameter typed AsyncIterable accepts (streams travel).
  const takes = (_s: Parameters<Remote<Streamer>["sum"]>[0]) => {};
  const s = undefined as unknown as RemoteStream<number>;
  takes(s);
  expect(true).toBe(true);
});
