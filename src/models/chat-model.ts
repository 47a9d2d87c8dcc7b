/**
 * `ChatModel`: the base of model wrappers. A wrapper is built from a model config, keeps the
 * key and endpoint in `#private` fields — so neither the codec (which sends own enumerable
 * fields), `JSON.stringify`, `Bun.inspect` nor an agent list can show them — and answers
 * `call()` (the whole reply) and `stream()` (the reply as it is generated).
 */
import type { Msg } from "../agent/message.ts";
import { ModelConfigError } from "./errors.ts";
import { formatMessages } from "./format.ts";
import { DEFAULT_TIMEOUT_SECONDS } from "./http.ts";
import { registerConfigSecrets } from "./redact.ts";
import type { ModelConfig } from "./store.ts";
import type { ChatMessage, ModelCallOptions, ModelInfo, ModelResponse } from "./types.ts";

/** A chat model reachable over HTTP, configured by one model config. */
export abstract class ChatModel {
  /** The config's `config_name`. */
  readonly configName: string;
  /** The config's `model_type`. */
  readonly modelType: string;
  /** The config's `model_name`, if any. */
  readonly modelName: string | undefined;
  readonly #timeoutMs: number;

  constructor(config: ModelConfig) {
    // Registered first: any error about this config, from here on, is redacted.
    registerConfigSecrets(config);
    this.configName = config.config_name;
    this.modelType = config.model_type;
    this.modelName = config.model_name;
    const t = (config.client_args?.timeout ?? (config.post_args as { timeout?: unknown } | undefined)?.timeout) as unknown;
    if (t !== undefined && (typeof t !== "number" || !(t > 0))) throw this.configError("client_args.timeout must be a positive number of seconds");
    this.#timeoutMs = ((t as number | undefined) ?? DEFAULT_TIMEOUT_SECONDS) * 1000;
  }

  /** Ask the model; resolves with the whole reply. */
  abstract call(messages: readonly ChatMessage[], opts?: ModelCallOptions): Promise<ModelResponse>;

  /**
   * Ask the model and receive the reply as it is generated: yields text deltas, returns the
   * whole response. Breaking out of the loop cancels the request.
   *
   * @example
   * for await (const delta of model.stream(messages)) process.stdout.write(delta);
   */
  abstract stream(messages: readonly ChatMessage[], opts?: ModelCallOptions): AsyncGenerator<string, ModelResponse, undefined>;

  /** The prompt for an agent: `sysPrompt`, then `history` with roles from `self`'s point of view. */
  format(sysPrompt: string | undefined, history: readonly Msg[], self?: string): ChatMessage[] {
    return formatMessages({ sysPrompt, history, self });
  }

  /** What this model is, without its key or endpoint. */
  toJSON(): ModelInfo {
    const o: ModelInfo = { configName: this.configName, modelType: this.modelType };
    if (this.modelName !== undefined) o.modelName = this.modelName;
    return o;
  }

  /** `Bun.inspect` / `console.log` show `toJSON()`. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `${this.constructor.name} ${JSON.stringify(this.toJSON())}`;
  }

  /** The deadline of one call, ms. */
  protected timeoutMs(opts: ModelCallOptions): number {
    return opts.timeoutMs ?? this.#timeoutMs;
  }

  /** A `ModelConfigError` about this config. */
  protected configError(problem: string): ModelConfigError {
    return new ModelConfigError(`model config '${this.configName}' (${this.modelType}): ${problem}`, { configName: this.configName });
  }

  /** `value` checked to be an http(s) URL, or a config error naming `field`. */
  protected httpUrl(value: unknown, field: string): string {
    if (typeof value !== "string" || !value) throw this.configError(`needs ${field}`);
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      throw this.configError(`${field} is not a URL`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw this.configError(`${field} must be an http(s) URL`);
    return value;
  }

  /** The body fields every call sends: config `generate_args`, then the call's, without `stream`. */
  protected generateArgs(config: ModelConfig, opts: ModelCallOptions): Record<string, unknown> {
    const { stream: _a, ...fromConfig } = config.generate_args ?? {};
    const { stream: _b, ...fromCall } = opts.generateArgs ?? {};
    return { ...fromConfig, ...fromCall };
  }
}
