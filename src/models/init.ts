/**
 * `init()`: configure this process the way `agentscope.init()` does — today, its model
 * configs (a JSON file path, one config, or a list).
 */
import { readFileSync } from "node:fs";
import { addModelConfigs, type ModelConfig } from "./store.ts";

/** Options of `init()`. */
export interface InitOptions {
  /** A path to a JSON file (one config or a list), one config, or a list of configs. */
  modelConfigs?: string | ModelConfig | ModelConfig[];
}

/** Load model configs (and future process-wide settings). */
export function init(opts: InitOptions = {}): void {
  if (opts.modelConfigs !== undefined) addModelConfigs(loadModelConfigs(opts.modelConfigs));
}

/** Read configs from a path, an object or a list, checking each has a `config_name` and `model_type`. */
export function loadModelConfigs(src: string | ModelConfig | ModelConfig[]): ModelConfig[] {
  let v: unknown = src;
  if (typeof src === "string") {
    try {
      v = JSON.parse(readFileSync(src, "utf8"));
    } catch (e) {
      throw new Error(`cannot read model configs from ${src}: ${(e as Error).message}`);
    }
  }
  const list = Array.isArray(v) ? v : [v];
  list.forEach((c, i) => {
    if (c === null || typeof c !== "object") throw new TypeError(`model config #${i} is not an object`);
    const m = c as Partial<ModelConfig>;
    if (typeof m.config_name !== "string" || !m.config_name) throw new TypeError(`model config #${i} has no config_name`);
    if (typeof m.model_type !== "string" || !m.model_type) throw new TypeError(`model config ${m.config_name} has no model_type`);
  });
  return list as ModelConfig[];
}
