/**
 * `init()`: configure this process the way `agentscope.init()` does — today, its model
 * configs (a JSON file path, one config, or a list) — and `applyModelConfigs()`, the same
 * for servers (the launcher's `--model-config-path` and `RpcClient.setModelConfigs`).
 */
import { ModelConfigError, ModelError } from "./errors.ts";
import { MAX_MODEL_CONFIGS, addModelConfigs, type ModelConfig } from "./store.ts";

/** Options of `init()`. */
export interface InitOptions {
  /** A path to a JSON file (one config or a list), one config, or a list of configs. */
  modelConfigs?: string | ModelConfig | ModelConfig[];
}

/** Options of `applyModelConfigs()`. */
export interface ApplyModelConfigsOptions {
  /**
   * The configs were sent by a remote peer (`RpcClient.setModelConfigs`): a string is JSON
   * text, never a path, because a peer must not make the server read its files.
   */
  fromPeer?: boolean;
}

/**
 * Load model configs (and future process-wide settings). At most `MAX_MODEL_CONFIGS`
 * (65,536) configs and `MAX_MODEL_CONFIG_BYTES` (32 MiB of JSON) per process; more is a
 * `ModelError` with code RESOURCE_EXHAUSTED and nothing is changed. Configs add to (or replace, by
 * `config_name`) those already loaded; child servers spawned afterwards inherit them.
 *
 * @example
 * init({ modelConfigs: [{ config_name: "local", model_type: "openai_chat",
 *   model_name: "llama3.2", client_args: { base_url: "http://localhost:11434/v1" } }] });
 */
export function init(opts: InitOptions = {}): void {
  if (opts.modelConfigs !== undefined) applyModelConfigs(opts.modelConfigs);
}

/**
 * Add model configs to this process: what a server runs for `--model-config-path` and for
 * `setModelConfigs` (with `{ fromPeer: true }`). Returns the names applied (never the
 * configs, which hold keys).
 *
 * @example
 * // in a launcher / CLI
 * applyModelConfigs(args.modelConfigPath);
 * // in ServicerOptions
 * setModelConfigs: (c) => { applyModelConfigs(c, { fromPeer: true }); },
 */
export function applyModelConfigs(src: unknown, opts: ApplyModelConfigsOptions = {}): string[] {
  let list: ModelConfig[];
  if (opts.fromPeer) list = checkModelConfigs(typeof src === "string" ? parseJson(src, "the model configs sent") : src);
  else if (typeof src === "string" || (src !== null && typeof src === "object")) list = loadModelConfigs(src as string | ModelConfig | ModelConfig[]);
  else throw new ModelConfigError("model configs must be a path, a config object or a list of configs");
  addModelConfigs(list);
  return list.map((c) => c.config_name);
}

/** Read configs from a path, an object or a list, checking the shape of each. */
export function loadModelConfigs(src: string | ModelConfig | ModelConfig[]): ModelConfig[] {
  if (typeof src !== "string") return checkModelConfigs(src);
  let text: string;
  try {
    // node:fs only when a path is given: loading it costs every process ~6 ms at start.
    text = (require("node:fs") as typeof import("node:fs")).readFileSync(src, "utf8");
  } catch (e) {
    throw new ModelConfigError(`cannot read model configs from ${src}: ${(e as Error).message}`, { code: "NOT_FOUND" });
  }
  return checkModelConfigs(parseJson(text, src));
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // The parser's message can quote the text, and the text holds API keys: say where, not what.
    throw new ModelConfigError(`${what} is not valid JSON`);
  }
}

const OPTIONAL_STRINGS = ["model_name", "api_key", "api_url", "organization", "messages_key"] as const;
const OPTIONAL_OBJECTS = ["client_args", "generate_args", "headers", "json_args", "post_args"] as const;

/**
 * Check that `v` is one config or a list of configs: each with a non-empty `config_name` and
 * `model_type`, and well-typed optional fields. Messages name the config, never a value.
 */
export function checkModelConfigs(v: unknown): ModelConfig[] {
  const list: unknown[] = Array.isArray(v) ? v : [v];
  // Refused before looking at each one: the count alone is over what a process holds.
  if (list.length > MAX_MODEL_CONFIGS) {
    throw new ModelError(`too many model configs: ${list.length} (at most ${MAX_MODEL_CONFIGS} per process)`, { code: "RESOURCE_EXHAUSTED" });
  }
  list.forEach((c, i) => {
    if (c === null || typeof c !== "object" || Array.isArray(c)) throw new ModelConfigError(`model config #${i} is not an object`);
    const m = c as Record<string, unknown>;
    if (typeof m.config_name !== "string" || !m.config_name) throw new ModelConfigError(`model config #${i} has no config_name`);
    const name = `model config '${m.config_name}'`;
    const where = { configName: m.config_name };
    if (typeof m.model_type !== "string" || !m.model_type) throw new ModelConfigError(`${name} has no model_type`, where);
    for (const k of OPTIONAL_STRINGS) {
      if (m[k] !== undefined && typeof m[k] !== "string") throw new ModelConfigError(`${name}: ${k} must be a string`, where);
    }
    for (const k of OPTIONAL_OBJECTS) {
      const o = m[k];
      if (o !== undefined && (o === null || typeof o !== "object" || Array.isArray(o))) throw new ModelConfigError(`${name}: ${k} must be an object`, where);
    }
    const headers = m.headers as Record<string, unknown> | undefined;
    for (const [h, val] of Object.entries(headers ?? {})) {
      if (typeof val !== "string") throw new ModelConfigError(`${name}: header ${h} must be a string`, where);
    }
  });
  return list as ModelConfig[];
}
