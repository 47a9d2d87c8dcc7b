import { readFileSync } from "node:fs";
import type { Remote } from "../../src/index.ts";

/** The environment process `pid` started with (Linux keeps it in /proc, whatever it deleted since). */
export function startEnv(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
}

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
