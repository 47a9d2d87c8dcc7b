import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AgentCallError,
  AgentCreationError,
  AsyncResult,
  DialogAgent,
  RpcClient,
  Msg,
  ModelConfigError,
  ModelError,
  ModelHttpError,
  OpenAIChatModel,
  PostAPIChatModel,
  applyModelConfigs,
  formatMessages,
  init,
  loadModel,
  loadModelConfigs,
  redact,
  redactConfig,
  type ModelConfig,
} from "../src/index.ts";
import { encodeValue } from "../src/core/codec.ts";
import { decodeValue } from "../src/core/codec-decode.ts";
import { randomId } from "../src/core/ids.ts";
import { liveChildren } from "../src/client/child-server.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { LocalPool } from "../src/server/pool/local.ts";
import { Servicer } from "../src/server/servicer.ts";
import { getModelConfig } from "../src/models/store.ts";
import { registerSecret } from "../src/models/redact.ts";
import { replyText } from "../src/models/reply-text.ts";
import { readSse } from "../src/models/sse.ts";
import { fakeReply, startFakeChat, type FakeChat } from "./fixtures/models-fake-chat.ts";
import { SOURCE_CLI, startServer } from "./helpers/cli.ts";

/** The key the fake accepts; it must never show up anywhere we print or send. */
const KEY = "sk-models-test-0123456789abcdef";
/** A key the fake refuses (and echoes back in its 401 body). */
const WRONG_KEY = "sk-models-wrong-fedcba9876543210";

let fake: FakeChat;
let tmp: string;

beforeAll(() => {
  fake = startFakeChat(KEY);
  tmp = mkdtempSync(join(tmpdir(), "actorscope-models-"));
  init({
    modelConfigs: [
      openai("mt-echo", "echo-model", { generate_args: { temperature: 0.25 } }),
      openai("mt-stream", "stream-model", { stream: true }),
      openai("mt-wrong-key", "echo-model", { api_key: WRONG_KEY }),
      openai("mt-fail", "fail-500"),
      openai("mt-slow", "slow"),
    ],
  });
});

afterAll(async () => {
  await fake.stop();
  rmSync(tmp, { recursive: true, force: true });
  expect(liveChildren()).toBe(0);
});

function openai(name: string, model: string, extra: Partial<ModelConfig> = {}): ModelConfig {
  return { config_name: name, model_type: "openai_chat", model_name: model, api_key: KEY, client_args: { base_url: fake.baseUrl }, ...extra };
}

function userMsg(content: string, name = "user"): Msg {
  return new Msg({ name, role: "user", content });
}

/** Every way an error can be shown: none may contain `secret`. */
function expectNoSecret(e: unknown, ...secrets: string[]): void {
  const err = e as Error;
  const views = [String(err), err.message, err.stack ?? "", JSON.stringify(err), Bun.inspect(err), JSON.stringify((err as AgentCallError).remote ?? {})];
  for (const s of secrets) for (const v of views) expect(v).not.toContain(s);
}

async function caught(p: PromiseLike<unknown> | (() => unknown)): Promise<Error> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(10);
  }
}

describe("model configs", () => {
  test("init takes a list, one object, or a JSON file path; configs are keyed by config_name", () => {
    const file = join(tmp, "configs.json");
    writeFileSync(file, JSON.stringify([{ config_name: "mt-file", model_type: "post_api_chat", api_url: "http://127.0.0.1:1/x" }]));
    init({ modelConfigs: file });
    init({ modelConfigs: { config_name: "mt-object", model_type: "openai_chat", model_name: "m" } });
    expect(getModelConfig("mt-file")?.model_type).toBe("post_api_chat");
    expect(getModelConfig("mt-object")?.model_name).toBe("m");
    expect(loadModelConfigs(file)).toHaveLength(1);
  });

  test("a config without config_name or model_type, or with a mistyped field, is refused with its name", () => {
    expect(() => init({ modelConfigs: [{ model_type: "openai_chat" } as unknown as ModelConfig] })).toThrow(/#0 has no config_name/);
    expect(() => init({ modelConfigs: { config_name: "mt-x" } as ModelConfig })).toThrow(/'mt-x' has no model_type/);
    expect(() => init({ modelConfigs: { config_name: "mt-y", model_type: "openai_chat", api_key: 42 } as unknown as ModelConfig })).toThrow(
      /'mt-y': api_key must be a string/,
    );
  });

  test("a missing file names the path; a file that is not JSON never quotes its text", () => {
    expect(() => init({ modelConfigs: join(tmp, "missing.json") })).toThrow(/cannot read model configs from .*missing\.json/);
    const bad = join(tmp, "bad.json");
    writeFileSync(bad, `[{ "config_name": "b", "api_key": sk-unquoted-secret-123 }]`);
    const e = (() => {
      try {
        init({ modelConfigs: bad });
      } catch (err) {
        return err as Error;
      }
    })();
    expect(e).toBeInstanceOf(ModelConfigError);
    expect(e?.message).toContain("is not valid JSON");
    expect(e?.message).not.toContain("unquoted");
  });

  test("applyModelConfigs from a peer parses a string as JSON and never reads a path", () => {
    expect(() => applyModelConfigs(join(tmp, "configs.json"), { fromPeer: true })).toThrow(/not valid JSON/);
    const names = applyModelConfigs(JSON.stringify({ config_name: "mt-peer", model_type: "openai_chat", model_name: "p", api_key: "sk-peer-secret-000111" }), {
      fromPeer: true,
    });
    expect(names).toEqual(["mt-peer"]);
    expect(getModelConfig("mt-peer")?.model_name).toBe("p");
  });

  test("loadModel: unknown config, unknown model_type and missing fields each name the config", () => {
    const unknown = caughtSync(() => loadModel("mt-nope"));
    expect(unknown).toBeInstanceOf(ModelConfigError);
    expect(unknown.message).toContain("unknown model config 'mt-nope'");
    expect((unknown as ModelConfigError).code).toBe("NOT_FOUND");

    const badType = caughtSync(() => loadModel({ config_name: "mt-t", model_type: "telepathy_chat" }));
    expect(badType.message).toContain("model config 'mt-t' has unknown model_type 'telepathy_chat'");
    expect(badType.message).toContain("openai_chat, post_api_chat");

    expect(caughtSync(() => loadModel({ config_name: "mt-o", model_type: "openai_chat" })).message).toBe("model config 'mt-o' (openai_chat): needs model_name");
    expect(caughtSync(() => loadModel({ config_name: "mt-p", model_type: "post_api_chat" })).message).toBe("model config 'mt-p' (post_api_chat): needs api_url");
    expect(
      caughtSync(() => loadModel({ config_name: "mt-u", model_type: "openai_chat", model_name: "m", client_args: { base_url: "file:///etc" } })).message,
    ).toContain("'mt-u' (openai_chat): client_args.base_url must be an http(s) URL");
  });
});

function caughtSync(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a throw");
}

describe("openai_chat", () => {
  test("a JSON answer: the reply text, the request body and the bearer key", async () => {
    const model = loadModel("mt-echo");
    expect(model).toBeInstanceOf(OpenAIChatModel);
    const res = await model.call([{ role: "user", content: "hello there" }], { generateArgs: { max_tokens: 7 } });
    expect(res.text).toBe("echo(echo-model): hello there");
    const seen = fake.requests.at(-1)!;
    expect(seen.path).toBe("/v1/chat/completions");
    expect(seen.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(seen.body).toMatchObject({ model: "echo-model", temperature: 0.25, max_tokens: 7, stream: false, messages: [{ role: "user", content: "hello there" }] });
    expect((res.raw as { usage: unknown }).usage).toBeDefined();
  });

  test("a streamed (SSE) answer is assembled by call() when the config says stream", async () => {
    const res = await loadModel("mt-stream").call([{ role: "user", content: "stream me a long enough reply" }]);
    expect(res.text).toBe("echo(stream-model): stream me a long enough reply");
    expect(fake.requests.at(-1)!.body.stream).toBe(true);
  });

  test("stream() yields the deltas as they arrive and returns the whole reply", async () => {
    const it = loadModel("mt-echo").stream([{ role: "user", content: "piece by piece" }]);
    const deltas: string[] = [];
    let r = await it.next();
    while (!r.done) {
      deltas.push(r.value);
      r = await it.next();
    }
    expect(deltas.length).toBeGreaterThan(3);
    expect(deltas.join("")).toBe("echo(echo-model): piece by piece");
    expect(r.value.text).toBe(deltas.join(""));
  });

  test("breaking out of stream() closes the connection", async () => {
    const model = new OpenAIChatModel(openai("mt-stall", "stall-stream"));
    const before = fake.aborted.length;
    for await (const delta of model.stream([{ role: "user", content: "x" }])) {
      expect(delta).toBe("first ");
      break;
    }
    await until(() => fake.aborted.length > before);
    expect(fake.aborted.at(-1)).toBe("stall-stream");
  });

  test("a stream that stalls times out (idle deadline) with DEADLINE_EXCEEDED", async () => {
    const model = new OpenAIChatModel(openai("mt-stall", "stall-stream"));
    const e = await caught(model.call([{ role: "user", content: "x" }], { stream: true, timeoutMs: 300 }));
    expect(e).toBeInstanceOf(ModelError);
    expect((e as ModelError).code).toBe("DEADLINE_EXCEEDED");
    expect(e.message).toContain("model config 'mt-stall'");
    expect(e.message).toContain("no data for 300 ms");
  });

  test("a request that does not answer in time is aborted (client_args.timeout, seconds)", async () => {
    const model = new OpenAIChatModel(openai("mt-slow-t", "slow", { client_args: { base_url: fake.baseUrl, timeout: 0.25 } }));
    const before = fake.aborted.length;
    const t0 = performance.now();
    const e = await caught(model.call([{ role: "user", content: "x" }]));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect((e as ModelError).code).toBe("DEADLINE_EXCEEDED");
    expect(e.message).toContain("no answer within 250 ms");
    await until(() => fake.aborted.length > before);
  });

  test("the caller's AbortSignal cancels the request", async () => {
    const ctl = new AbortController();
    const p = loadModel("mt-slow").call([{ role: "user", content: "x" }], { signal: ctl.signal });
    setTimeout(() => ctl.abort(), 50);
    const e = await caught(p);
    expect((e as ModelError).code).toBe("CANCELLED");
    expect(e.message).toBe(`model config 'mt-slow': POST ${fake.baseUrl}/chat/completions was cancelled`);
  });

  test("an HTTP error status gives ModelHttpError with status and body, never the key", async () => {
    const e = await caught(loadModel("mt-fail").call([{ role: "user", content: "x" }]));
    expect(e).toBeInstanceOf(ModelHttpError);
    const h = e as ModelHttpError;
    expect(h.status).toBe(500);
    expect(h.code).toBe("INTERNAL");
    expect(h.message).toContain(`model config 'mt-fail': POST ${fake.baseUrl}/chat/completions answered 500`);
    expect(h.body).toContain("upstream exploded while serving Bearer ***");
    expectNoSecret(e, KEY);
  });

  test("a 401 that echoes the key sent is redacted", async () => {
    const e = await caught(loadModel("mt-wrong-key").call([{ role: "user", content: "x" }]));
    expect((e as ModelHttpError).status).toBe(401);
    expect((e as ModelHttpError).code).toBe("UNAUTHENTICATED");
    expect(e.message).toContain("Incorrect API key provided: ***");
    expectNoSecret(e, WRONG_KEY, KEY);
  });

  test("a long error body is truncated", async () => {
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("x".repeat(20_000), { status: 503 }) });
    try {
      const e = await caught(new OpenAIChatModel(openai("mt-long", "m", { client_args: { base_url: `http://127.0.0.1:${server.port}/v1` } })).call([]));
      expect((e as ModelHttpError).code).toBe("UNAVAILABLE");
      expect(e.message.length).toBeLessThan(800);
      expect(e.message).toMatch(/more characters\)$/);
    } finally {
      server.stop(true);
    }
  });

  test("an unreachable endpoint fails with UNAVAILABLE naming the config", async () => {
    const free = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("") });
    const port = free.port;
    free.stop(true);
    const e = await caught(new OpenAIChatModel(openai("mt-down", "m", { client_args: { base_url: `http://user:pw-secret-xyz@127.0.0.1:${port}/v1?key=q-secret-abc` } })).call([]));
    expect((e as ModelError).code).toBe("UNAVAILABLE");
    expect(e.message).toContain(`model config 'mt-down': POST http://127.0.0.1:${port}/v1/chat/completions failed`);
    expectNoSecret(e, "pw-secret-xyz", "q-secret-abc", KEY);
  });
});

describe("post_api_chat", () => {
  const post = (shape: string, extra: Partial<ModelConfig> = {}): ModelConfig => ({
    config_name: `mt-post-${shape}`,
    model_type: "post_api_chat",
    api_url: `${fake.url}/api/chat?shape=${shape}`,
    headers: { "X-Custom": "yes" },
    json_args: { model: "tiny", options: { seed: 1 } },
    ...extra,
  });

  test("POSTs headers, json_args and the messages; reads AgentScope, Ollama, OpenAI and Anthropic shapes", async () => {
    for (const shape of ["agentscope", "ollama", "openai", "anthropic"]) {
      const model = loadModel(post(shape, { api_key: KEY }));
      expect(model).toBeInstanceOf(PostAPIChatModel);
      const res = await model.call([{ role: "user", content: `hi ${shape}` }]);
      expect(res.text).toBe(`plain(${shape}): hi ${shape}`);
      const seen = fake.requests.at(-1)!;
      expect(seen.path).toBe(`/api/chat?shape=${shape}`);
      expect(seen.headers["x-custom"]).toBe("yes");
      expect(seen.headers.authorization).toBe(`Bearer ${KEY}`);
      expect(seen.body).toEqual({ model: "tiny", options: { seed: 1 }, messages: [{ role: "user", content: `hi ${shape}` }] });
    }
  });

  test("messages_key renames the messages field; stream() yields the reply once", async () => {
    const model = loadModel(post("openai", { messages_key: "conversation" }));
    const deltas: string[] = [];
    for await (const d of model.stream([{ role: "user", content: "a" }])) deltas.push(d);
    expect(deltas).toEqual(["plain(openai): "]);
    expect(fake.requests.at(-1)!.body.conversation).toEqual([{ role: "user", content: "a" }]);
  });

  test("an answer without a known shape says so, naming the config", async () => {
    const e = await caught(loadModel(post("none")).call([{ role: "user", content: "a" }]));
    expect(e.message).toContain("model config 'mt-post-none'");
    expect(e.message).toContain("without a reply text in any known shape (top-level: unexpected)");
  });

  test("replyText knows the common response shapes", () => {
    expect(replyText({ choices: [{ text: "completion" }] })).toBe("completion");
    expect(replyText({ output: { text: "dashscope" } })).toBe("dashscope");
    expect(replyText({ candidates: [{ content: { parts: [{ text: "gem" }, { text: "ini" }] } }] })).toBe("gemini");
    expect(replyText({ response: "ollama generate" })).toBe("ollama generate");
    expect(replyText([{ generated_text: "hf" }])).toBe("hf");
    expect(replyText({ choices: [] })).toBeUndefined();
    expect(replyText(null)).toBeUndefined();
  });
});

describe("server-sent events", () => {
  async function events(chunks: string[]): Promise<Array<{ event: string; data: string }>> {
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const ch of chunks) c.enqueue(enc.encode(ch));
        c.close();
      },
    });
    const out = [];
    for await (const ev of readSse(body)) out.push(ev);
    return out;
  }

  test("joins data lines, keeps event names, skips comments, handles CRLF split across chunks", async () => {
    expect(await events([": hi\r", "\ndata: a\r", "\ndata: b\r", "\n\r", "\nevent: error\ndata: {}\n\n", "data: tail"])).toEqual([
      { event: "message", data: "a\nb" },
      { event: "error", data: "{}" },
      { event: "message", data: "tail" },
    ]);
  });
});

describe("redaction", () => {
  test("redact() masks registered secrets and common credential shapes", () => {
    registerSecret("plain-secret-value");
    expect(redact("the plain-secret-value leaked")).toBe("the *** leaked");
    expect(redact("Authorization: Bearer abc.def-ghi")).not.toContain("abc.def-ghi");
    expect(redact("key sk-proj-ABCDEFGH12345678 was bad")).toBe("key sk-*** was bad");
    expect(redact('{"api_key": "zzz-unregistered-111"}')).toBe('{"api_key": "***"}');
    expect(redact("GET https://x.test/v1?key=AIzaSomething&alt=json")).toBe("GET https://x.test/v1?key=***&alt=json");
    expect(redact("http://bob:hunter22@host/")).toBe("http://bob:***@host/");
    expect(redact("nothing to hide here")).toBe("nothing to hide here");
  });

  test("redactConfig masks credential fields at any depth and keeps the rest", () => {
    const c = redactConfig({ ...openai("mt-r", "m"), headers: { Authorization: "Bearer tok-123456", "Content-Type": "application/json" } });
    expect(c.api_key).toBe("***");
    expect(c.headers).toEqual({ Authorization: "***", "Content-Type": "application/json" });
    expect(c.model_name).toBe("m");
    expect(JSON.stringify(c)).not.toContain(KEY);
  });

  test("a model wrapper shows no key: toJSON, JSON.stringify, Bun.inspect and the wire codec", () => {
    const model = loadModel("mt-echo");
    expect(model.toJSON()).toEqual({ configName: "mt-echo", modelType: "openai_chat", modelName: "echo-model" });
    for (const view of [JSON.stringify(model), Bun.inspect(model), JSON.stringify(decodeValue(encodeValue(model))), Object.keys(model).join()]) {
      expect(view).not.toContain(KEY);
      expect(view).not.toContain(fake.url);
    }
  });
});

describe("formatMessages", () => {
  test("system prompt first; own turns are assistant, others user with their name (also in the text)", () => {
    const history = [
      new Msg({ name: "Moderator", role: "system", content: "topic" }),
      userMsg("hi", "user 1"),
      new Msg({ name: "Bob", content: "I disagree" }),
      new Msg({ name: "Alice", content: "I agree" }),
      new Msg({ name: "Bob", content: { n: 1 } }),
    ];
    expect(formatMessages({ sysPrompt: "You are Alice.", history, self: "Alice" })).toEqual([
      { role: "system", content: "You are Alice." },
      { role: "system", content: "topic", name: "Moderator" },
      { role: "user", content: "hi", name: "user_1" },
      { role: "user", content: "Bob: I disagree", name: "Bob" },
      { role: "assistant", content: "I agree", name: "Alice" },
      { role: "user", content: 'Bob: {"n":1}', name: "Bob" },
    ]);
  });
});

describe("DialogAgent (local)", () => {
  test("reply prompts the model with system prompt + memory and answers as an assistant Msg", async () => {
    const a = new DialogAgent("Alice", { sysPrompt: "You are Alice.", modelConfigName: "mt-echo" });
    const first = await a.reply(userMsg("hello Alice"));
    expect(first).toBeInstanceOf(Msg);
    expect(first.name).toBe("Alice");
    expect(first.role).toBe("assistant");
    expect(first.content).toBe("echo(echo-model): hello Alice");
    // The input may be an AsyncResult (as on a server): reply awaits it.
    const second = await a.reply(new AsyncResult(Promise.resolve(userMsg("again"))) as unknown as Msg);
    expect(second.content).toBe("echo(echo-model): again");
    expect(fake.requests.at(-1)!.body.messages).toEqual([
      { role: "system", content: "You are Alice." },
      { role: "user", content: "hello Alice", name: "user" },
      { role: "assistant", content: "echo(echo-model): hello Alice", name: "Alice" },
      { role: "user", content: "again", name: "user" },
    ]);
    expect(a.memory!.size()).toBe(4);
    expect(a.model.modelType).toBe("openai_chat");
  });

  test("an unknown modelConfigName fails in the constructor, naming it", () => {
    const e = caughtSync(() => new DialogAgent("x", { modelConfigName: "mt-does-not-exist" }));
    expect(e).toBeInstanceOf(ModelConfigError);
    expect(e.message).toContain("unknown model config 'mt-does-not-exist'");
    expect(caughtSync(() => new DialogAgent("x", {} as never)).message).toBe("DialogAgent x needs a modelConfigName");
  });
});

describe("DialogAgent on a server (servicer core)", () => {
  async function withServicer(fn: (s: Servicer) => Promise<void>): Promise<void> {
    const s = new Servicer({
      serverId: "models-test",
      address: { host: "127.0.0.1", port: 1 },
      resolveClass: (name) => (name === "DialogAgent" ? DialogAgent : undefined),
      capacity: 4,
      maxQueue: 16,
      pool: new LocalPool({ maxPoolSize: 100, maxExpireTime: 60 }),
      maxTimeoutSeconds: 5,
      setModelConfigs: (c) => {
        applyModelConfigs(c, { fromPeer: true });
      },
    });
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  }
  const create = (s: Servicer, oid: string, configName: string) =>
    s.handle({ t: "create", oid, cls: "DialogAgent", args: encodeValue(["Carol", { sysPrompt: "You are Carol.", modelConfigName: configName }]) });

  test("creation with an unknown config fails naming it; after setModelConfigs the same creation succeeds", async () => {
    await withServicer(async (s) => {
      const oid = randomId();
      const failed = await create(s, oid, "mt-late");
      expect(failed.t).toBe("error");
      expect(failed.t === "error" && failed.error.message).toContain("unknown model config 'mt-late'");
      const late = { ...openai("mt-late", "echo-model"), api_key: "sk-late-key-abcdef0123" };
      expect(await s.handle({ t: "setModelConfigs", configs: encodeValue([late]) })).toEqual({ t: "ok" });
      expect(await create(s, oid, "mt-late")).toEqual({ t: "ok" });

      // Nothing the server reports holds a key.
      const list = s.agentList();
      expect(list).toEqual([{ id: oid, cls: "DialogAgent", name: "Carol", sysPrompt: "You are Carol.", model: { configName: "mt-late", modelType: "openai_chat" } }]);
      const read = await s.handle({ t: "call", oid, name: "model", args: encodeValue([]) });
      const model = read.t === "value" ? decodeValue(read.value) : read;
      expect(model).toEqual({ configName: "mt-late", modelType: "openai_chat", modelName: "echo-model" });
      for (const shown of [JSON.stringify(list), JSON.stringify(s.serverInfo()), JSON.stringify(model)]) {
        expect(shown).not.toContain("sk-late-key-abcdef0123");
      }
    });
  });

  test("cancelling the remote call cancels the model's HTTP request", async () => {
    await withServicer(async (s) => {
      const oid = randomId();
      expect(await create(s, oid, "mt-slow")).toEqual({ t: "ok" });
      const task = randomId();
      const seen = fake.requests.length;
      const before = fake.aborted.length;
      expect(await s.handle({ t: "call", oid, name: "reply", args: encodeValue([userMsg("take your time")]), task })).toEqual({ t: "task", task });
      await until(() => fake.requests.length > seen);
      expect(await s.handle({ t: "cancel", task })).toEqual({ t: "ok" });
      await until(() => fake.aborted.length > before, 2000);
      const res = await s.handle({ t: "wait", task, timeoutMs: 2000 });
      expect(res.t).toBe("error");
      expect(res.t === "error" && res.error.message).toContain("model config 'mt-slow'");
      expect(res.t === "error" && res.error.message).toContain("was cancelled");
    });
  });
});

describe("DialogAgent in child mode", () => {
  test("the child inherits the configs of init() and reaches the model", async () => {
    await using a = new DialogAgent("Alice", { sysPrompt: "You are Alice.", modelConfigName: "mt-echo" }).toDist();
    const pid = (remoteState(a)!.owner as unknown as { pid: number }).pid;
    const seen = fake.requests.length;
    const r = await a.reply(userMsg("hello from the parent"));
    expect(r).toBeInstanceOf(Msg);
    expect(r.name).toBe("Alice");
    expect(r.role).toBe("assistant");
    expect(r.content).toBe("echo(echo-model): hello from the parent");
    const req = fake.requests[seen]!;
    expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req.body.messages).toEqual([
      { role: "system", content: "You are Alice." },
      { role: "user", content: "hello from the parent", name: "user" },
    ]);
    expect(pid).not.toBe(process.pid);
  });

  test("a reply passed on as an AsyncResult is awaited by the next agent's server", async () => {
    await using alice = new DialogAgent("Alice", { sysPrompt: "You are Alice.", modelConfigName: "mt-echo" }).toDist();
    await using bob = new DialogAgent("Bob", { sysPrompt: "You are Bob.", modelConfigName: "mt-stream" }).toDist();
    const r = await bob.reply(alice.reply(userMsg("start")));
    expect(r.name).toBe("Bob");
    expect(r.content).toBe(fakeReply({ model: "stream-model", messages: [{ role: "user", content: "Alice: echo(echo-model): start" }] }));
  });

  test("an unknown modelConfigName → AgentCreationError naming it", async () => {
    const bad = DialogAgent.toDist(true, "Nobody", { modelConfigName: "mt-unknown-in-child" });
    try {
      const e = await caught(bad.reply(userMsg("x")));
      expect(e).toBeInstanceOf(AgentCreationError);
      expect(e.message).toContain("unknown model config 'mt-unknown-in-child'");
    } finally {
      await bad.stop();
    }
  });

  test("a model error on the server reaches the caller with its status, never the key", async () => {
    await using wrong = new DialogAgent("W", { modelConfigName: "mt-wrong-key" }).toDist();
    await using failing = new DialogAgent("F", { modelConfigName: "mt-fail" }).toDist();
    const e401 = await caught(wrong.reply(userMsg("x")));
    expect(e401).toBeInstanceOf(AgentCallError);
    expect((e401 as AgentCallError).remote.name).toBe("ModelHttpError");
    expect(e401.message).toContain("answered 401");
    expectNoSecret(e401, WRONG_KEY, KEY);
    const e500 = await caught(failing.reply(userMsg("x")));
    expect(e500.message).toContain("answered 500");
    expectNoSecret(e500, KEY);
  });

  // Any local user can read a command line (ps, /proc/<pid>/cmdline): the inherited configs
  // travel in the environment instead (readable by the same user only), which the child
  // removes from process.env before loading user code, so nothing it spawns inherits them.
  test("a child server's command line holds no API key", async () => {
    await using a = new DialogAgent("Alice", { modelConfigName: "mt-echo" }).toDist();
    await a.name;
    const pid = (remoteState(a)!.owner as unknown as { pid: number }).pid;
    const cmdline = await Bun.file(`/proc/${pid}/cmdline`).text();
    expect(cmdline).not.toContain(KEY);
  });
});

describe("DialogAgent on an independent server (as-server CLI)", () => {
  test("--model-config-path configs serve agents; unknown config → AgentCreationError; setModelConfigs fixes it; no key is listed", async () => {
    const file = join(tmp, "server-configs.json");
    writeFileSync(file, JSON.stringify([openai("mt-server", "echo-model")]));
    await using server = await startServer(SOURCE_CLI, ["--port", "0", "--agent-dir", "examples/llm-debate", "--model-config-path", file]);
    const at = { host: server.host, port: server.port };
    await using a = DialogAgent.toDist(at, "Dora", { sysPrompt: "You are Dora.", modelConfigName: "mt-server" });
    expect((await a.reply(userMsg("hi Dora"))).content).toBe("echo(echo-model): hi Dora");

    const missing = DialogAgent.toDist(at, "Eve", { modelConfigName: "mt-server-late" });
    const e = await caught(missing.name);
    expect(e).toBeInstanceOf(AgentCreationError);
    expect(e.message).toContain("unknown model config 'mt-server-late'");

    const client = new RpcClient(server.host, server.port);
    try {
      expect(await client.setModelConfigs([{ ...openai("mt-server-late", "echo-model"), api_key: "sk-sent-late-0987654321" }])).toBe(true);
      await using late = DialogAgent.toDist(at, "Eve", { modelConfigName: "mt-server-late" });
      expect(await late.name).toBe("Eve");
      const list = await client.getAgentList();
      expect(list.map((x) => x.model)).toEqual([
        { configName: "mt-server", modelType: "openai_chat" },
        { configName: "mt-server-late", modelType: "openai_chat" },
      ]);
      const shown = JSON.stringify([list, await client.getServerInfo(), await a.model, server.stdout.text, server.stderr.text]);
      expect(shown).not.toContain(KEY);
      expect(shown).not.toContain("sk-sent-late-0987654321");
      expect(shown).not.toContain(fake.url);
    } finally {
      client.close();
    }
  });
});

describe("examples/llm-debate", () => {
  async function runDebate(args: string[]): Promise<{ out: string; err: string; code: number }> {
    await using p = Bun.spawn(["bun", "examples/llm-debate/debate.ts", ...args], {
      cwd: join(import.meta.dir, ".."),
      env: { ...process.env, LLM_BASE_URL: fake.baseUrl, LLM_MODEL: "debate-fake", LLM_API_KEY: KEY },
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { out, err, code };
  }

  function expectTurns(out: string, rounds: number): void {
    for (const who of ["Pro", "Con", "Judge"]) expect(out.match(new RegExp(`^\\[${who}\\] echo\\(debate-fake\\): `, "gm"))).toHaveLength(rounds);
    expect(out).not.toContain(KEY);
  }

  test("three DialogAgents on child servers debate for the rounds asked, against any OpenAI-compatible endpoint", async () => {
    const seen = fake.requests.length;
    const { out, err, code } = await runDebate(["--rounds", "2", "--topic", "Tabs are better than spaces"]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toContain("Topic: Tabs are better than spaces");
    expectTurns(out, 2);
    const reqs = fake.requests.slice(seen);
    expect(reqs).toHaveLength(6);
    for (const r of reqs) {
      expect(r.headers.authorization).toBe(`Bearer ${KEY}`);
      expect(r.body.model).toBe("debate-fake");
    }
    // Each speaker prompts with its own system prompt and sees the others' turns.
    expect(reqs.map((r) => r.body.messages?.[0]?.content.split(".")[0])).toEqual([
      "You are Pro",
      "You are Con",
      "You are the Judge",
      "You are Pro",
      "You are Con",
      "You are the Judge",
    ]);
    const judgeRound2 = reqs[5]!.body.messages!;
    expect(judgeRound2.filter((m) => m.content.startsWith("Pro: ")).length).toBe(2);
    expect(judgeRound2.filter((m) => m.content.startsWith("Con: ")).length).toBe(2);
  });

  test("--host/--port: the agents live on an independent server, with its own config or one sent by --send-config", async () => {
    const file = join(tmp, "debate-configs.json");
    writeFileSync(file, JSON.stringify([{ ...openai("debate", "debate-fake"), generate_args: { max_tokens: 64 } }]));
    {
      await using server = await startServer(SOURCE_CLI, ["--port", "0", "--agent-dir", "examples/llm-debate", "--model-config-path", file]);
      const { out, err, code } = await runDebate(["--rounds", "1", "--host", server.host, "--port", String(server.port)]);
      expect(err).toBe("");
      expect(code).toBe(0);
      expectTurns(out, 1);
      expect(fake.requests.at(-1)!.body.max_tokens).toBe(64);
    }
    {
      await using server = await startServer(SOURCE_CLI, ["--port", "0", "--agent-dir", "examples/llm-debate"]);
      const { out, err, code } = await runDebate(["--rounds", "1", "--host", server.host, "--port", String(server.port), "--send-config"]);
      expect(err).toBe("");
      expect(code).toBe(0);
      expectTurns(out, 1);
      expect(fake.requests.at(-1)!.body.max_tokens).toBe(256);
    }
  });

  test("an unreachable model endpoint ends the debate with a hint and exit code 1", async () => {
    await using p = Bun.spawn(["bun", "examples/llm-debate/debate.ts", "--rounds", "1"], {
      cwd: join(import.meta.dir, ".."),
      env: { ...process.env, LLM_BASE_URL: "http://127.0.0.1:9/v1", LLM_MODEL: "m", LLM_API_KEY: KEY },
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });
    const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect(code).toBe(1);
    expect(err).toContain("debate failed: ");
    expect(err).toContain("is an OpenAI-compatible server running at http://127.0.0.1:9/v1?");
    expect(err).not.toContain(KEY);
  });
});
