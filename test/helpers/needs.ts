/**
 * Tests that need a tool this machine may lack (redis-server, root + iproute2 for network
 * namespaces, Chromium). `scripts/test.ts` (the README's `bun run test`) installs them when it
 * can; where it could not, those tests are reported **skipped, with the reason in their name**
 * and once on stderr, never failed and never silently passed. In CI (`CI=true`) nothing is
 * skipped: the tests run and fail with the tool's own clear error.
 *
 * A test file opts in by taking `describe` / `test` / `beforeAll` from its helper (e.g.
 * `import { describe, test } from "./helpers/redis.ts"`), which are bun's own when the tool is
 * there.
 */
import { appendFileSync } from "node:fs";
import { beforeAll as bunBeforeAll, describe as bunDescribe, test as bunTest } from "bun:test";

/** True under CI (`CI` set to anything but "", "0" or "false"): skipping is never allowed there. */
export function inCi(env: Record<string, string | undefined> = process.env): boolean {
  const v = env.CI;
  return v !== undefined && v !== "" && v !== "0" && v !== "false";
}

const announced = new Set<string>();

/**
 * Why the tests of `group` cannot run here (`check()` says), or undefined when they can or
 * when in CI. The reason is printed once, on one line, and appended to `AS_TEST_SKIP_LOG`
 * when set (scripts/test.ts repeats those lines under its summary).
 */
export function requirement(group: string, check: () => string | undefined): string | undefined {
  if (inCi()) return undefined;
  const why = check();
  if (why === undefined) return undefined;
  const line = `skipped: ${group}: ${why}`;
  if (!announced.has(line)) {
    announced.add(line);
    process.stderr.write(`${line}\n`);
    const log = process.env.AS_TEST_SKIP_LOG;
    if (log) appendFileSync(log, `${line}\n`);
  }
  return why;
}

/**
 * bun's `describe`, or `describe.skip`. The reason goes into each test's name (`testUnless`),
 * not the suite's too, so a skipped line reads "suite > test [skipped: …]" once.
 */
export function describeUnless(why: string | undefined): typeof bunDescribe {
  if (why === undefined) return bunDescribe;
  return Object.assign((name: unknown, fn: () => void) => bunDescribe.skip(String(name), fn), bunDescribe) as unknown as typeof bunDescribe;
}

/** bun's `test`, or one that skips every test with `[skipped: tag]` in its name (`tag`: a few words). */
export function testUnless(why: string | undefined, tag = why): typeof bunTest {
  if (why === undefined) return bunTest;
  const skip = (name: unknown, fn: () => unknown) => bunTest.skip(`${String(name)} [skipped: ${tag}]`, fn as () => void);
  return Object.assign(skip, bunTest) as unknown as typeof bunTest;
}

/** bun's `beforeAll`, or a no-op: set-up that would need the missing tool never runs. */
export function beforeAllUnless(why: string | undefined): typeof bunBeforeAll {
  if (why === undefined) return bunBeforeAll;
  return (() => {}) as unknown as typeof bunBeforeAll;
}

/**
 * Why Chromium tests (the dashboard's, to come) cannot run here, else undefined. A function, so
 * that only files with such tests announce it.
 */
export function chromiumMissing(): string | undefined {
  return requirement("Chromium tests", () =>
    Bun.which("chromium") || Bun.which("chromium-browser") ? undefined : "chromium is not installed (apt-get install chromium; `bun run test` installs it when run as root)",
  );
}
