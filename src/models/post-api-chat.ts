/**
 * `post_api_chat`: a plain JSON POST to `api_url` with `headers`, the messages in the body
 * (under `messages_key`, default `messages`, next to `json_args` and `generate_args`), and
 * the reply text read from whichever common response shape comes back (see `replyText`).
 */
import { ModelError, truncate } from "./errors.ts";
import { ChatModel } from "./chat-model.ts";
import { ModelRequest } from "./http.ts";
import { redact } from "./redact.ts";
import { replyText } from "./reply-text.ts";
import type { ModelConfig } from "./store.ts";
import type { ChatMessage, ModelCallOptions, ModelResponse } from "./types.ts";

/**
 * The `post_api_chat` model wrapper.
 *
 * @example
 * const m = new PostAPIChatModel({ config_name: "mine", model_type: "post_api_chat",
 *   api_url: "http://localhost:11434/api/chat", json_args: { model: "llama3.2", stream: false } });
 */
export class PostAPIChatModel extends ChatModel {
  readonly #config: ModelConfig;
  readonly #url: string;
  readonly #headers: Record<string, string>;
  readonly #messagesKey: string;

  constructor(config: ModelConfig) {
    super(config);
    this.#config = config;
    this.#url = this.httpUrl(config.api_url, "api_url");
    this.#headers = { "content-type": "application/json", ...config.headers };
    const hasAuth = Object.keys(this.#headers).some((h) => h.toLowerCase() === "authorization");
    if (config.api_key && !hasAuth) this.#headers.authorization = `Bearer ${config.api_key}`;
    this.#messagesKey = typeof config.messages_key === "string" && config.messages_key ? config.messages_key : "messages";
  }

  /** The whole reply. */
  async call(messages: readonly ChatMessage[], opts: ModelCallOptions = {}): Promise<ModelResponse> {
    const body: Record<string, unknown> = {
      ...(this.#config.model_name ? { model: this.#config.model_name } : {}),
      ...(this.#config.json_args as Record<string, unknown> | undefined),
      ...this.generateArgs(this.#config, opts),
    };
    body[this.#messagesKey] = messages;
    const req = new ModelRequest({ configName: this.configName, url: this.#url, headers: this.#headers, body, timeoutMs: this.timeoutMs(opts), signal: opts.signal });
    const raw = await req.json();
    const text = replyText(raw);
    if (text === undefined) {
      const keys = raw !== null && typeof raw === "object" ? Object.keys(raw).slice(0, 10).join(", ") : typeof raw;
      throw new ModelError(`model config '${this.configName}': ${req.where} answered without a reply text in any known shape (top-level: ${truncate(redact(keys), 200)})`, {
        code: "INTERNAL",
        configName: this.configName,
      });
    }
    return { text, raw };
  }

  /** A plain POST API has no standard stream: the whole reply arrives as one piece. */
  async *stream(messages: readonly ChatMessage[], opts: ModelCallOptions = {}): AsyncGenerator<string, ModelResponse, undefined> {
    const r = await this.call(messages, opts);
    if (r.text) yield r.text;
    return r;
  }
}
