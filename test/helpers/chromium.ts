/**
 * A real headless Chromium driven over the DevTools protocol: open a page, evaluate
 * expressions in it, take a screenshot. Killed and awaited on dispose.
 */
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A page in a headless Chromium. */
export interface Browser extends AsyncDisposable {
  /** Evaluate `expr` in the page; its value (JSON-able). */
  evaluate<T>(expr: string): Promise<T>;
  /** PNG of the page, written to `file`. */
  screenshot(file: string): Promise<void>;
}

/** Start Chromium on `url`; resolves once the page has loaded. */
export async function openPage(url: string): Promise<Browser> {
  const bin = Bun.which("chromium") ?? Bun.which("chromium-browser");
  if (!bin) throw new Error("chromium is not installed");
  const profile = mkdtempSync(join(tmpdir(), "as-chromium-"));
  const proc: Subprocess<"ignore", "ignore", "pipe"> = Bun.spawn(
    [bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0", `--user-data-dir=${profile}`, "--window-size=1200,900", "about:blank"],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  const dispose = async () => {
    proc.kill("SIGKILL");
    await proc.exited;
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const ws = await devtoolsUrl(proc);
    const port = Number(new URL(ws).port);
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ type: string; webSocketDebuggerUrl: string }>;
    const target = targets.find((t) => t.type === "page");
    if (!target) throw new Error("chromium has no page target");
    const cdp = await connect(target.webSocketDebuggerUrl);
    await cdp.send("Page.enable");
    const loaded = cdp.once("Page.loadEventFired");
    await cdp.send("Page.navigate", { url });
    await loaded;
    return {
      async evaluate<T>(expr: string) {
        const r = (await cdp.send("Runtime.evaluate", { expression: expr, returnByValue: true })) as { result: { value: T } };
        return r.result.value;
      },
      async screenshot(file: string) {
        const r = (await cdp.send("Page.captureScreenshot", { format: "png" })) as { data: string };
        await Bun.write(file, Buffer.from(r.data, "base64"));
      },
      async [Symbol.asyncDispose]() {
        cdp.close();
        await dispose();
      },
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** The DevTools WebSocket URL Chromium prints on stderr. */
async function devtoolsUrl(proc: Subprocess<"ignore", "ignore", "pipe">): Promise<string> {
  const dec = new TextDecoder();
  let seen = "";
  const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  try {
    for await (const chunk of proc.stderr) {
      seen += dec.decode(chunk, { stream: true });
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(seen);
      if (m) return m[1]!;
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`chromium exited before its DevTools line: ${seen.slice(-500)}`);
}

async function connect(url: string) {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("cannot connect to chromium's DevTools"));
  });
  let next = 1;
  const calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const listeners = new Map<string, Array<() => void>>();
  ws.onmessage = (m) => {
    const msg = JSON.parse(String(m.data)) as { id?: number; result?: unknown; error?: { message: string }; method?: string };
    if (msg.id !== undefined) {
      const c = calls.get(msg.id);
      calls.delete(msg.id);
      if (msg.error) c?.reject(new Error(msg.error.message));
      else c?.resolve(msg.result);
    } else if (msg.method) for (const l of listeners.get(msg.method)?.splice(0) ?? []) l();
  };
  return {
    send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
      const id = next++;
      ws.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve, reject) => calls.set(id, { resolve, reject }));
    },
    once(method: string): Promise<void> {
      return new Promise((resolve) => listeners.set(method, [...(listeners.get(method) ?? []), resolve]));
    },
    close() {
      ws.close();
    },
  };
}
