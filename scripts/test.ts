/**
 * `bun run test [bun test args…]`: the README's test command and .ci/run's.
 *
 * 1. Provide what the tests need (scripts/provide.sh: redis-server, iproute2, chromium with
 *    apt-get when root); a tool still missing leaves its tests **skipped with the reason**
 *    (test/helpers/needs.ts), one line each, repeated under the summary.
 * 2. Run `bun test` with its usual output (and a JUnit report on the side, for the counts),
 *    test files in parallel worker processes (one per core, at most 4; each file isolated).
 * 3. End with one line: `tests: N passed, N failed, N skipped`.
 *
 * Under CI=true nothing may be skipped: a missing tool fails its tests, and any skipped test
 * fails the run.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

/** Counts from a bun JUnit report (the `<testsuites …>` element). */
export function junitCounts(xml: string): { tests: number; failures: number; skipped: number } {
  const head = /<testsuites\b[^>]*>/.exec(xml)?.[0] ?? "";
  const n = (k: string) => Number(new RegExp(`\\b${k}="(\\d+)"`).exec(head)?.[1] ?? 0);
  return { tests: n("tests"), failures: n("failures"), skipped: n("skipped") };
}

async function main(): Promise<number> {
  const ci = !!process.env.CI && process.env.CI !== "0" && process.env.CI !== "false";
  if (process.platform === "linux" && Bun.which("bash")) {
    Bun.spawnSync(["bash", join(ROOT, "scripts/provide.sh")], { stdio: ["ignore", "inherit", "inherit"] });
  }
  const dir = mkdtempSync(join(tmpdir(), "as-test-run-"));
  try {
    const junit = join(dir, "junit.xml");
    const skipLog = join(dir, "skipped.txt");
    // `--timeout` as well as the preload's setDefaultTimeout: Bun 1.4.5 applies a preload's
    // default to the first test file only (measured: the second file's tests stop at 5 s).
    const args = process.argv.slice(2);
    // Files run in worker processes, one per core (at most 4): most tests wait on processes
    // they spawned, so two workers on a 2-core machine halve the suite (measured 270 → 140 s).
    const parallel = args.some((a) => a.startsWith("--parallel")) ? [] : [`--parallel=${Math.min(4, Math.max(1, navigator.hardwareConcurrency))}`];
    const proc = Bun.spawn([process.execPath, "test", ...parallel, "--timeout", "30000", "--reporter=junit", `--reporter-outfile=${junit}`, ...args], {
      cwd: ROOT,
      stdio: ["inherit", "inherit", "inherit"],
      env: { ...process.env, AS_TEST_SKIP_LOG: skipLog },
    });
    const code = await proc.exited;
    const c = existsSync(junit) ? junitCounts(readFileSync(junit, "utf8")) : { tests: 0, failures: 0, skipped: 0 };
    // A file that fails to load or an error between tests fails the run without a failed test case.
    const failed = Math.max(c.failures, code !== 0 ? 1 : 0);
    const passed = Math.max(0, c.tests - c.failures - c.skipped);
    const reasons = existsSync(skipLog) ? [...new Set(readFileSync(skipLog, "utf8").split("\n").filter(Boolean))] : [];
    for (const r of reasons) console.log(r);
    let rc = code === 0 ? 0 : 1;
    if (ci && c.skipped > 0) {
      console.log(`tests: ${c.skipped} skipped under CI, where nothing may be skipped`);
      rc = 1;
    }
    console.log(`tests: ${passed} passed, ${failed + (ci ? c.skipped : 0)} failed, ${c.skipped} skipped`);
    return rc;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) process.exit(await main());
