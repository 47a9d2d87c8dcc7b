import type { Remote } from "../../src/index.ts";

/** Tracks child-mode proxies a test file starts, so `afterAll` can stop every child server. */
export function childTracker(): { child<T>(p: Remote<T>): Remote<T>; stopAll(): Promise<void> } {
  const started: Array<Remote<unknown>> = [];
  return {
    child<T>(p: Remote<T>): Remote<T> {
      started.push(p as Remote<unknown>);
      return p;
    },
    async stopAll(): Promise<void> {
      await Promise.all(started.map((p) => p.stop()));
    },
  };
}
