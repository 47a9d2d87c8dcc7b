/**
 * The model configs of this process, keyed by `config_name`. Set by `init()` (and on servers
 * by `--model-config-path` / `setModelConfigs`); child servers inherit them from the parent.
 */
import { registerConfigSecrets } from "./redact.ts";

/**
 * One model config, as AgentScope users write them.
 *
 * @example
 * const gpt: ModelConfig = {
 *   config_name: "gpt", model_type: "openai_chat", model_name: "gpt-4o-mini",
 *   api_key: process.env.OPENAI_API_KEY, generate_args: { temperature: 0.5 },
 * };
 */
export interface ModelConfig {
  /** The name agents use to pick this config (`modelConfigName`). */
  config_name: string;
  /** Which wrapper calls the model: `"openai_chat"` or `"post_api_chat"` (or a registered type). */
  model_type: string;
  /** The model to ask for (`model` in the request body). Required by `openai_chat`. */
  model_name?: string;
  /** Sent as `Authorization: Bearer …`; never printed, logged or listed. */
  api_key?: string;
  /** Client settings: `base_url` (OpenAI-compatible root, e.g. `http://localhost:11434/v1`), `timeout` (seconds), `default_headers`. */
  client_args?: { base_url?: string; timeout?: number; [k: string]: unknown };
  /** Merged into every request body (temperature, max_tokens, …). */
  generate_args?: Record<string, unknown>;
  /** `post_api_chat`: the URL to POST to. */
  api_url?: string;
  /** `post_api_chat`: request headers. */
  headers?: Record<string, string>;
  [k: string]: unknown;
}

let configs: Map<string, ModelConfig> | undefined;

/** Replace the configs of this process. */
export function setModelConfigList(list: ModelConfig[]): void {
  for (const c of list) registerConfigSecrets(c);
  configs = new Map(list.map((c) => [c.config_name, c]));
}

/** Add or replace configs, keeping the others. */
export function addModelConfigs(list: ModelConfig[]): void {
  configs ??= new Map();
  for (const c of list) {
    // Registered before anything can fail with this config, so its key is masked everywhere.
    registerConfigSecrets(c);
    configs.set(c.config_name, c);
  }
}

/** The config named `name`, if any. */
export function getModelConfig(name: string): ModelConfig | undefined {
  return configs?.get(name);
}

/** Names of the configs of this process (names only: safe to print). */
export function modelConfigNames(): string[] {
  return configs ? [...configs.keys()] : [];
}

/** The configs a child server should inherit (undefined when none were set). */
export function currentModelConfigs(): ModelConfig[] | undefined {
  return configs ? [...configs.values()] : undefined;
}
