/**
 * The model configs of this process, keyed by `config_name`. Set by `init()` (and on servers
 * by `--model-config-path` / `setModelConfigs`); child servers inherit them from the parent.
 */

/** One model config, as AgentScope users write them. */
export interface ModelConfig {
  config_name: string;
  model_type: string;
  model_name?: string;
  api_key?: string;
  client_args?: { base_url?: string; [k: string]: unknown };
  generate_args?: Record<string, unknown>;
  api_url?: string;
  headers?: Record<string, string>;
  [k: string]: unknown;
}

let configs: Map<string, ModelConfig> | undefined;

/** Replace the configs of this process. */
export function setModelConfigList(list: ModelConfig[]): void {
  configs = new Map(list.map((c) => [c.config_name, c]));
}

/** Add or replace configs, keeping the others. */
export function addModelConfigs(list: ModelConfig[]): void {
  configs ??= new Map();
  for (const c of list) configs.set(c.config_name, c);
}

/** The config named `name`, if any. */
export function getModelConfig(name: string): ModelConfig | undefined {
  return configs?.get(name);
}

/** The configs a child server should inherit (undefined when none were set). */
export function currentModelConfigs(): ModelConfig[] | undefined {
  return configs ? [...configs.values()] : undefined;
}
