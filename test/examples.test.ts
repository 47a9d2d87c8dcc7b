import { describe, expect, test } from "bun:test";

async function runScript(args: string[], timeoutMs = 30_000, stdin?: string): Promise<{ code: number; out: string; err: string }> {
  await using p = Bun.spawn([process.execPath, ...args], { cwd: import.meta.dir + "/..", stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

describe("examples", () => {
  test("web-search: five distributed agents take about S, five local ones about 5·S", async () => {
    const S = 0.4;
    const { code, out, err } = await runScript(["examples/web-search/dist_main.ts", "--sleep", String(S)]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const num = (label: string) => Number(out.match(new RegExp(`${label}: ([0-9.]+) s`))?.[1]);
    expect(out.match(/\[W\d\] Answer from W\d/g)?.length).toBe(10);
    expect(num("sequential \\(local\\) time")).toBeGreaterThanOrEqual(5 * S);
    expect(num("distributed time")).toBeGreaterThanOrEqual(S);
    expect(num("distributed time")).toBeLessThan(2 * S);
    expect(num("init time")).toBeLessThan(2);
  });

  test("web-search, independent mode: init of 5 agents on a running server takes milliseconds", async () => {
    await using server = Bun.spawn([process.execPath, "examples/web-search/dist_server.ts", "--port", "0"], {
      cwd: import.meta.dir + "/..",
      stdout: "pipe",
      stderr: "inherit",
    });
    const reader = server.stdout.getReader();
    let text = "";
    while (!/listening on \S+:\d+/.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`dist_server exited: ${text}`);
      text += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const [, host, port] = text.match(/listening on (\S+):(\d+)/)!;
    const S = 0.3;
    const { code, out } = await runScript(["examples/web-search/dist_main.ts", "--sleep", String(S), "--host", host!, "--port", port!]);
    expect(code).toBe(0);
    const num = (label: string) => Number(out.match(new RegExp(`${label}: ([0-9.]+) s`))?.[1]);
    expect(num("init time")).toBeLessThan(0.5);
    expect(num("distributed time")).toBeGreaterThanOrEqual(S);
    expect(num("distributed time")).toBeLessThan(2 * S);
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  });

  test("sync-async: sync blocks about 1 s, async calls return at once, _protected is unreachable", async () => {
    const { code, out } = await runScript(["examples/sync-async/example.ts"]);
    expect(code).toBe(0);
    expect(out).toContain("protected method reachable: false");
    expect(out).toContain("sync result: sync");
    expect(Number(out.match(/sync func cost: ([0-9.]+)/)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(out.match(/async func cost: ([0-9.]+)/)?.[1])).toBeLessThan(0.05);
    expect(out).toContain("async basic result: async");
    expect(out).toContain("async composite result: a=1 b=2 c=hello world");
  });

  test("progress: a child-server crawl reports every page to the caller's bar in order, and the caller's answer decides what follows", async () => {
    const yes = await runScript(["examples/progress/main.ts"], 30_000, "y\n");
    expect(yes.err).toBe("");
    expect(yes.code).toBe(0);
    const steps = [...yes.out.matchAll(/\] (\d+)\/12 /g)].map((m) => Number(m[1]));
    expect(steps).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(yes.out).toContain("crawled 12 pages, 87000 bytes");
    expect(yes.out).toContain("Follow the 3 links found? [y/n] y");
    expect(yes.out).toContain("] 3/3 /c");
    expect(yes.out).toContain("followed 3 links (6000 bytes)");
    const no = await runScript(["examples/progress/main.ts"], 30_000, "n\n");
    expect(no.code).toBe(0);
    expect(no.out).toContain("stopped at the caller's request");
    expect(no.out).not.toContain("/3 /a");
  });
});
