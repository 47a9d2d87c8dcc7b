import { expect, test } from "bun:test";

test("the whole project type-checks under strict settings (tsc --noEmit)", async () => {
  const tsc = Bun.spawn([process.execPath, "x", "tsc", "--noEmit", "-p", "."], { cwd: import.meta.dir + "/..", stdout: "pipe", stderr: "pipe" });
  const [out, code] = await Promise.all([new Response(tsc.stdout).text(), tsc.exited]);
  expect(out).toBe("");
  expect(code).toBe(0);
}, 120_000);
