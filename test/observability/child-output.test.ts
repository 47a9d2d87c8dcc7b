/**
 * Child output tagging and crash lines (issue 19): a parent script (test/fixtures/chatty-script.ts)
 * runs as a subprocess; its stdout and stderr must show each line its children print, tagged
 * with the agent's class and oid (or the server id of a launcher's subprocess), and a line for
 * each crash and restart, as text and, with AS_LOG_FORMAT=json, as JSON objects.
 */
import { describe, expect, test } from "bun:test";
import { ChildOutput, tagOf } from "../../src/client/child-output.ts";

const SCRIPT = new URL("../fixtures/chatty-script.ts", import.meta.url).pathname;

async function runParent(mode: string, env: Record<string, string> = {}): Promise<{ out: string[]; err: string[] }> {
  const p = Bun.spawn([process.execPath, SCRIPT, mode], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`parent script exited ${code}:\n${out}\n${err}`);
  return { out: out.split("\n"), err: err.split("\n") };
}

function marker(lines: string[], re: RegExp): RegExpExecArray {
  for (const l of lines) {
    const m = re.exec(l);
    if (m) return m;
  }
  throw new Error(`no line matches ${re}:\n${lines.join("\n")}`);
}

function json(lines: string[]): Array<Record<string, unknown>> {
  return lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("child output", () => {
  test("a child's stdout and stderr lines reach the parent's, tagged [Class oid…]; its crash logs class, oid, pid and reason", async () => {
    const { out, err } = await runParent("plain");
    const [, oid, pid] = marker(out, /^PARENT OID (\w+) PID (\d+)$/);
    const tag = `[Chatty ${oid!.slice(0, 8)}…]`;
    expect(out).toContain(`${tag} hello from a child`);
    expect(err).toContain(`${tag} hello from a child (on stderr)`);
    // Untouched: the parent's own lines are not tagged.
    expect(out).toContain("PARENT done");
    expect(err).toContain(`actorscope: child server of Chatty ${oid} (pid ${pid}) exited (code 7)`);
  });

  test("--log-format json (AS_LOG_FORMAT=json): one JSON object per child line, and the crash and restart of a supervised child", async () => {
    const { out, err } = await runParent("supervised", { AS_LOG_FORMAT: "json" });
    const [, oid, pid] = marker(out, /^PARENT OID (\w+) PID (\d+)$/);
    const [, pid2] = marker(out, /^PARENT PID2 (\d+)$/);
    expect(json(out)).toContainEqual(expect.objectContaining({ event: "child.output", cls: "Chatty", oid, pid: Number(pid), stream: "stdout", line: "hello from a child" }));
    expect(json(err)).toContainEqual(expect.objectContaining({ event: "child.output", cls: "Chatty", oid, stream: "stderr", line: "hello from a child (on stderr)" }));
    expect(json(err)).toContainEqual(expect.objectContaining({ event: "child.crashed", cls: "Chatty", oid, pid: Number(pid), reason: "exited (code 7)" }));
    expect(json(err)).toContainEqual(expect.objectContaining({ event: "agent.restarting", cls: "Chatty", oid }));
    expect(json(err)).toContainEqual(expect.objectContaining({ event: "agent.restarted", cls: "Chatty", oid, pid: Number(pid2), restarts: 1 }));
    // The restarted child's lines carry its new pid.
    expect(json(out)).toContainEqual(expect.objectContaining({ event: "child.output", oid, pid: Number(pid2), line: "hello again" }));
  });

  test("a launcher's server subprocess: lines tagged with its server id, and a line when it dies behind the launcher's back", async () => {
    const { out, err } = await runParent("subprocess");
    const [, pid] = marker(out, /^PARENT SERVERPID (\d+)$/);
    expect(out).toContain("[server chatty01] hello from a server subprocess");
    expect(err).toContain("[server chatty01] hello from a server subprocess (on stderr)");
    expect(out.some((l) => l.includes("AS-SERVER READY"))).toBe(false);
    expect(err).toContain(`actorscope: agent server subprocess chatty01 (pid ${pid}) exited (signal SIGKILL)`);
  });
});

describe("ChildOutput", () => {
  test("assembles lines across chunks, writes a last line without newline, splits a runaway line, keeps the stderr tail", async () => {
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((s: string) => (written.push(s), true)) as typeof process.stderr.write;
    try {
      const out = new ChildOutput({ cls: "W", oid: "alice" });
      const enc = new TextEncoder();
      const chunks = ["one\ntw", "o\r\n", "x".repeat(70 * 1024), "\nlast"];
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          for (const x of chunks) c.enqueue(enc.encode(x));
          c.close();
        },
      });
      await out.pump(stream, "stderr");
      expect(written.slice(0, 2)).toEqual(["[W alice] one\n", "[W alice] two\n"]);
      expect(written[2]).toBe(`[W alice] ${"x".repeat(64 * 1024)}\n`);
      expect(written[3]).toBe(`[W alice] ${"x".repeat(6 * 1024)}\n`);
      expect(written[4]).toBe("[W alice] last\n");
      expect(out.lastLines(1)).toBe("last");
    } finally {
      process.stderr.write = write;
    }
    expect(tagOf({ cls: "Worker", oid: "3f2a9c1e5b7d4f608a1b2c3d4e5f6a7b" })).toBe("Worker 3f2a9c1e…");
    expect(tagOf({ serverId: "abc" })).toBe("server abc");
  });
});
