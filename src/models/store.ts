/**
 * The model configs of this process, keyed by `config_name`. Set by `init()` (and on servers
 * by `--model-config-path` / `setModelConfigs`); child servers inherit them from the parent.
 */
import { ModelError } from "./errors.ts";
import { registerConfigSecrets } from "./redact.ts";

/** Most model configs one process holds; more are refused with RESOURCE_EXHAUSTED. */
export const MAX_MODEL_CONFIGS = 65_536;
/** Most bytes (JSON text) all model configs of one process add up to; more are refused with RESOURCE_EXHAUSTED. */
export const MAX_MODEL_CONFIG_BYTES = 32 * 1024 * 1024;

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
/** JSON size of each config held, and their sum, for MAX_MODEL_CONFIG_BYTES. */
let sizes = new Map<string, number>();
let totalBytes = 0;

/** Replace the configs of this process. Throws RESOURCE_EXHAUSTED past the bounds (nothing changed then). */
export function setModelConfigList(list: ModelConfig[]): void {
  const next = new Map<string, number>();
  for (const c of list) next.set(c.config_name, sizeOf(c));
  let bytes = 0;
  for (const n of next.values()) bytes += n;
  checkBounds(next.size, bytes);
  for (const c of list) registerConfigSecrets(c);
  configs = new Map(list.map((c) => [c.config_name, c]));
  sizes = next;
  totalBytes = bytes;
}

/** Add or replace configs, keeping the others. Throws RESOURCE_EXHAUSTED past the bounds (nothing changed then). */
export function addModelConfigs(list: ModelConfig[]): void {
  // Sizes first, so that a refused batch leaves the process as it was.
  const incoming = new Map<string, number>();
  for (const c of list) incoming.set(c.config_name, sizeOf(c));
  let count = configs?.size ?? 0;
  let bytes = totalBytes;
  for (const [name, n] of incoming) {
    const old = sizes.get(name);
    if (old === undefined) count++;
    bytes += n - (old ?? 0);
  }
  checkBounds(count, bytes);
  configs ??= new Map();
  for (const c of list) {
    // Registered before anything can fail with this config, so its key is masked everywhere.
    registerConfigSecrets(c);
    configs.set(c.config_name, c);
  }
  for (const [name, n] of incoming) sizes.set(name, n);
  totalBytes = bytes;
}

function sizeOf(c: ModelConfig): number {
  try {
    return JSON.stringify(c)?.length ?? 0;
  } catch {
    // A cycle or a BigInt: not a config anyone can send or store as JSON.
    throw new ModelError(`model config '${String(c.config_name).slice(0, 80)}' is not plain JSON data`, { code: "INVALID_ARGUMENT" });
  }
}

function checkBounds(count: number, bytes: number): void {
  if (count > MAX_MODEL_CONFIGS) {
    throw new ModelError(`too many model configs: ${count} (at most ${MAX_MODEL_CONFIGS} per process)`, { code: "RESOURCE_EXHAUSTED" });
  }
  if (bytes > MAX_MODEL_CONFIG_BYTES) {
    throw new ModelError(`model configs too large: ${mib(bytes)} MiB in all (at most ${mib(MAX_MODEL_CONFIG_BYTES)} MiB per process)`, { code: "RESOURCE_EXHAUSTED" });
  }
}

const mib = (n: number): string => String(Math.round((n / 1048576) * 10) / 10);

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
