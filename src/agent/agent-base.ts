import { Memory } from "./memory.ts";
import type { Msg } from "./message.ts";
import { asyncFunc } from "../core/decorators.ts";
import { Distributable } from "../client/distributable.ts";

/** Options of `AgentBase`. */
export interface AgentOptions {
  /** System prompt (used by model-backed agents). */
  sysPrompt?: string;
  /** Name of the model config this agent calls (see `init`). */
  modelConfigName?: string;
  /** Keep a memory of observed messages. Default true. */
  useMemory?: boolean;
}

/**
 * Base of agents: a name, an optional memory, and `reply`/`call`, which are async when the
 * agent is distributed (they return an AsyncResult at once). Arguments may be AsyncResults
 * of other agents' replies: `await x` inside `reply` resolves them on this server.
 *
 * @example
 * @dist class Echo extends AgentBase {
 *   async reply(x?: Msg) {
 *     const m = await x;
 *     return new Msg({ name: this.name, content: m?.content });
 *   }
 * }
 */
export abstract class AgentBase extends Distributable {
  readonly name: string;
  sysPrompt: string | undefined;
  modelConfigName: string | undefined;
  memory: Memory | undefined;

  constructor(name: string, opts: AgentOptions = {}) {
    super();
    if (typeof name !== "string" || !name) throw new TypeError("an agent needs a name");
    this.name = name;
    this.sysPrompt = opts.sysPrompt;
    this.modelConfigName = opts.modelConfigName;
    this.memory = opts.useMemory === false ? undefined : new Memory();
  }

  /** Produce this agent's reply to `x`. Subclasses override it. */
  @asyncFunc
  reply(_x?: Msg): Msg | Promise<Msg> {
    throw new Error(`${this.constructor.name} does not implement reply()`);
  }

  /** AgentScope's `__call__`: resolve `x`, remember it, reply, remember the reply. */
  @asyncFunc
  async call(x?: Msg): Promise<Msg> {
    const input = x === undefined ? undefined : await x;
    if (input) this.observe(input);
    const y = await this.reply(input);
    this.observe(y);
    return y;
  }

  /** Take messages into memory without replying. */
  observe(x: Msg | Msg[]): void {
    this.memory?.add(x);
  }
}
