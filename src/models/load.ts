/**
 * `loadModel()`: the model wrapper for a config name (or a config), picked by `model_type`.
 * New types can be added with `registerModelType()`.
 */
import type { ChatModel } from "./chat-model.ts";
import { ModelConfigError } from "./errors.ts";
import { checkModelConfigs } from "./init.ts";
import { OpenAIChatModel } from "./openai-chat.ts";
import { PostAPIChatModel } from "./post-api-chat.ts";
import { getModelConfig, modelConfigNames, type ModelConfig } from "./store.ts";

/** Builds the wrapper of one `model_type` from a config (throws `ModelConfigError` on missing fields). */
export type ModelFactory = (config: ModelConfig) => ChatModel;

const factories = new Map<string, ModelFactory>([
  ["openai_chat", (c) => new OpenAIChatModel(c)],
  ["post_api_chat", (c) => new PostAPIChatModel(c)],
]);

/**
 * Teach `loadModel` a new `model_type`.
 *
 * @example
 * registerModelType("my_api", (c) => new MyModel(c));
 */
export function registerModelType(type: string, factory: ModelFactory): void {
  if (typeof type !== "string" || !type) throw new TypeError("a model type needs a name");
  factories.set(type, factory);
}

/** The `model_type`s `loadModel` knows. */
export function modelTypes(): string[] {
  return [...factories.keys()];
}

/**
 * The model wrapper for the config named `config` (see `init`), or for a config object.
 * Unknown names and types, and missing fields, throw a `ModelConfigError` naming the config.
 *
 * @example
 * init({ modelConfigs: "./model_configs.json" });
 * const model = loadModel("gpt-4");
 * const { text } = await model.call([{ role: "user", content: "Hello" }]);
 */
export function loadModel(config: string | ModelConfig): ChatModel {
  let c: ModelConfig | undefined;
  if (typeof config === "string") {
    c = getModelConfig(config);
    if (!c) {
      const names = modelConfigNames();
      const known = names.length ? `known: ${names.slice(0, 10).join(", ")}${names.length > 10 ? ", …" : ""}` : "no model configs are loaded: call init({ modelConfigs }) first";
      throw new ModelConfigError(`unknown model config '${clip(config)}' (${known})`, { code: "NOT_FOUND", configName: config });
    }
  } else {
    c = checkModelConfigs(config)[0]!;
  }
  const factory = factories.get(c.model_type);
  if (!factory) {
    throw new ModelConfigError(`model config '${c.config_name}' has unknown model_type '${clip(c.model_type)}' (supported: ${modelTypes().join(", ")})`, {
      configName: c.config_name,
    });
  }
  return factory(c);
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}
