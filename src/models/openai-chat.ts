/**
 * `openai_chat`: any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, llama.cpp
 * server, vLLM, LM Studio, …): `POST {base_url}/chat/completions`, plain JSON or streamed
 * as server-sent events (`stream: true`).
 */
import { ModelError, truncate } from "./errors.ts";
import { ChatModel } from "./chat-model.ts";
import { ModelRequest } from "./http.ts";
import { redact } from "./redact.ts";
import { readSse } from "./sse.ts";
import type { ModelConfig } from "./store.ts";
import { textOf } from "./reply-text.ts";
import type { ChatMessage, ModelCallOptions, ModelResponse } from "./types.ts";

/** Where `openai_chat` sends requests when the config has no `client_args.base_url`. */
export const OPENAI_BASE_URL = "https://api.openai.com/v1";

/**
 * The `openai_chat` model wrapper.
 *
 * @example
 * const m = new OpenAIChatModel({ config_name: "local", model_type: "openai_chat",
 *   model_name: "llama3.2", client_args: { base_url: "http://localhost:11434/v1" } });
 * const { text } = await m.call([{ role: "user", content: "Hello" }]);
 */
export class OpenAIChatModel extends ChatModel {
  readonly #config: ModelConfig;
  readonly #url: string;
  readonly #headers: Record<string, string>;
  readonly #stream: boolean;

  constructor(config: ModelConfig) {
    super(config);
    this.#config = config;
    if (typeof config.model_name !== "string" || !config.model_name) throw this.configError("needs model_name");
    const base = new URL(this.httpUrl(config.client_args?.base_url ?? OPENAI_BASE_URL, "client_args.base_url"));
    // Appended to the path, so a query in base_url (Azure's `?api-version=`) stays a query.
    base.pathname = `${base.pathname.replace(/\/+$/, "")}/chat/completions`;
    this.#url = base.href;
    const extra = config.client_args?.default_headers;
    this.#headers = { "content-type": "application/json", ...(isStringRecord(extra) ? extra : {}) };
    const key = config.api_key ?? config.client_args?.api_key;
    if (typeof key === "string" && key) this.#headers.authorization = `Bearer ${key}`;
    if (typeof config.organization === "string") this.#headers["openai-organization"] = config.organization;
    this.#stream = config.stream === true || config.generate_args?.stream === true;
  }

  /** The whole reply; streamed and assembled when the config (or `opts.stream`) says so. */
  async call(messages: readonly ChatMessage[], opts: ModelCallOptions = {}): Promise<ModelResponse> {
    if (opts.stream ?? this.#stream) {
      const it = this.stream(messages, opts);
      for (;;) {
        const r = await it.next();
        if (r.done) return r.value;
      }
    }
    const req = this.#request(messages, opts, false);
    const raw = await req.json();
    return { text: this.#text(raw, req.where), raw };
  }

  /** The reply as it is generated (SSE deltas). */
  async *stream(messages: readonly ChatMessage[], opts: ModelCallOptions = {}): AsyncGenerator<string, ModelResponse, undefined> {
    const req = this.#request(messages, opts, true);
    const res = await req.send();
    let text = "";
    try {
      if (!res.body) throw new ModelError(`model config '${this.configName}': ${req.where} answered with an empty body`, { code: "INTERNAL", configName: this.configName });
      for await (const ev of readSse(res.body, () => req.touch())) {
        if (ev.data === "[DONE]") break;
        const delta = this.#delta(ev.data, ev.event, req.where);
        if (delta) {
          text += delta;
          yield delta;
        }
      }
    } catch (e) {
      throw req.failure(e);
    } finally {
      req.close();
    }
    return { text };
  }

  #request(messages: readonly ChatMessage[], opts: ModelCallOptions, stream: boolean): ModelRequest {
    const body = { model: this.#config.model_name, ...this.generateArgs(this.#config, opts), messages, stream };
    return new ModelRequest({ configName: this.configName, url: this.#url, headers: this.#headers, body, timeoutMs: this.timeoutMs(opts), signal: opts.signal });
  }

  #text(raw: unknown, where: string): string {
    const choice = (raw as { choices?: Array<{ message?: { content?: unknown } }> } | null)?.choices?.[0];
    if (!choice) throw this.#answerError(raw, where, "has no choices");
    // content is null when the model only called tools: the reply text is then empty.
    const content = choice.message?.content;
    return content === null || content === undefined ? "" : (textOf(content) ?? "");
  }

  #delta(data: string, event: string, where: string): string | undefined {
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      throw new ModelError(`model config '${this.configName}': ${where} streamed an event that is not JSON: ${truncate(data, 200)}`, { code: "INTERNAL", configName: this.configName });
    }
    if (event === "error" || (chunk as { error?: unknown } | null)?.error != null) throw this.#answerError(chunk, where, "streamed an error");
    const c = (chunk as { choices?: Array<{ delta?: { content?: unknown } }> } | null)?.choices?.[0]?.delta?.content;
    return typeof c === "string" ? c : undefined;
  }

  #answerError(raw: unknown, where: string, what: string): ModelError {
    const err = (raw as { error?: unknown } | null)?.error;
    const detail = typeof err === "string" ? err : (err as { message?: unknown } | undefined)?.message;
    const shown = typeof detail === "string" ? detail : safeJson(raw);
    return new ModelError(`model config '${this.configName}': ${where} ${what}: ${truncate(redact(shown), 300)}`, { code: "INTERNAL", configName: this.configName });
  }
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return v !== null && typeof v === "object" && Object.values(v).every((x) => typeof x === "string");
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
