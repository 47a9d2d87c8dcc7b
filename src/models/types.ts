/** The shapes model wrappers take and give. */

/** One chat message as chat-completion APIs take it. */
export interface ChatMessage {
  /** Who speaks, from the prompted agent's point of view. */
  role: "system" | "user" | "assistant";
  /** The text of the turn. */
  content: string;
  /** The speaker (letters, digits, `_` and `-` only: what the OpenAI API accepts). */
  name?: string;
}

/** A model's answer. */
export interface ModelResponse {
  /** The reply text (assembled from the deltas when streamed). */
  text: string;
  /** The parsed response body of a non-streamed call, for fields beyond `text` (usage, …). */
  raw?: unknown;
}

/** Per-call options of a model wrapper. */
export interface ModelCallOptions {
  /** Cancels the request. On an agent server the served call's signal is added automatically. */
  signal?: AbortSignal;
  /**
   * Deadline, ms (default: `client_args.timeout` seconds, else 300 s). A streamed request
   * times out when no data arrives for this long, however long the whole answer takes.
   */
  timeoutMs?: number;
  /** Merged over the config's `generate_args` for this call. */
  generateArgs?: Record<string, unknown>;
  /** `call()` only: stream the answer (SSE) and assemble it; default from the config's `stream`. */
  stream?: boolean;
}

/** What a model wrapper shows of itself (`toJSON`, agent lists): never its key. */
export interface ModelInfo {
  /** The config's `config_name`. */
  configName: string;
  /** The config's `model_type`. */
  modelType: string;
  /** The config's `model_name`, if it has one. */
  modelName?: string;
}
