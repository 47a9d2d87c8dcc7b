/**
 * `DialogAgent`: AgentScope's dialog agent. It keeps a memory, and its `reply` prompts its
 * model with the system prompt and the memory, then answers with what the model said.
 */
import { AgentBase, type AgentOptions } from "./agent-base.ts";
import { Msg } from "./message.ts";
import { asyncFunc, dist } from "../core/decorators.ts";
import type { ChatModel } from "../models/chat-model.ts";
import { ModelConfigError } from "../models/errors.ts";
import { loadModel } from "../models/load.ts";

/** Options of `DialogAgent`. */
export interface DialogAgentOptions extends AgentOptions {
  /** The system prompt: who the agent is and how it should answer. */
  sysPrompt?: string;
  /** Name of the model config to call (loaded with `init`, or `setModelConfigs` on a server). */
  modelConfigName: string;
}

/**
 * An agent that answers with a model. Creating one with an unknown `modelConfigName` throws
 * at once (on a server, creation fails with `AgentCreationError` naming the config).
 *
 * @example
 * init({ modelConfigs: [{ config_name: "local", model_type: "openai_chat", model_name: "llama3.2",
 *   client_args: { base_url: "http://localhost:11434/v1" } }] });
 * await using bob = new DialogAgent("Bob", { sysPrompt: "You are Bob.", modelConfigName: "local" }).toDist();
 * const answer = await bob.reply(new Msg({ name: "user", role: "user", content: "Hi Bob!" }));
 */
@dist
export class DialogAgent extends AgentBase {
  /** The model this agent calls (its key and endpoint are not readable through it). */
  readonly model: ChatModel;

  constructor(name: string, opts: DialogAgentOptions) {
    super(name, opts);
    if (typeof opts?.modelConfigName !== "string" || !opts.modelConfigName) {
      throw new ModelConfigError(`DialogAgent ${name} needs a modelConfigName`);
    }
    this.model = loadModel(opts.modelConfigName);
  }

  /** Remember `x`, prompt the model with the system prompt and the memory, remember and return its answer. */
  @asyncFunc
  override async reply(x?: Msg): Promise<Msg> {
    // On a server `x` may be another agent's pending reply (an AsyncResult): resolve it here.
    const input = x === undefined ? undefined : ((await (x as Msg | PromiseLike<Msg>)) ?? undefined);
    if (input) this.observe(input);
    const history = this.memory ? this.memory.get() : input ? [input] : [];
    const res = await this.model.call(this.model.format(this.sysPrompt, history, this.name));
    const msg = new Msg({ name: this.name, role: "assistant", content: res.text });
    this.observe(msg);
    return msg;
  }

  /**
   * `reply`, streamed: yields the model's text chunks as it generates them (openai_chat with
   * `stream: true`; other models yield their whole answer as one chunk), then adds the whole
   * answer to memory as a Msg. Breaking out of the loop cancels the model request.
   *
   * @example
   * for await (const chunk of bob.replyStream(question)) process.stdout.write(chunk);
   */
  async *replyStream(x?: Msg): AsyncGenerator<string> {
    const input = x === undefined ? undefined : ((await (x as Msg | PromiseLike<Msg>)) ?? undefined);
    if (input) this.observe(input);
    const history = this.memory ? this.memory.get() : input ? [input] : [];
    // On a server the served call's signal reaches the model request by itself; breaking out
    // of this loop (the consumer cancelled) ends the request through the iterator's return().
    let text = "";
    for await (const chunk of this.model.stream(this.model.format(this.sysPrompt, history, this.name))) {
      text += chunk;
      yield chunk;
    }
    this.observe(new Msg({ name: this.name, role: "assistant", content: text }));
  }
}
