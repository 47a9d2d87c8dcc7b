/**
 * Turning an agent's memory into a chat prompt: the system prompt first, then every message
 * with a role from the agent's point of view and the speaker's name.
 */
import type { Msg } from "../agent/message.ts";
import type { ChatMessage } from "./types.ts";

/** What `formatMessages` needs. */
export interface FormatInput {
  /** Becomes the first (system) message, if given. */
  sysPrompt?: string | undefined;
  /** The conversation, oldest first (usually the agent's memory). */
  history: readonly Msg[];
  /** The agent the prompt is for: its own messages become `assistant` turns. */
  self?: string | undefined;
}

/**
 * The chat messages for `input`: system messages stay `system`, the agent's own messages
 * become `assistant`, everything else `user`, each with the speaker's `name`.
 *
 * @example
 * formatMessages({ sysPrompt: "Be brief.", history: agent.memory!.get(), self: agent.name });
 */
export function formatMessages(input: FormatInput): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (input.sysPrompt) out.push({ role: "system", content: input.sysPrompt });
  for (const m of input.history) {
    const mine = input.self !== undefined && m.name === input.self;
    const role: ChatMessage["role"] = m.role === "system" ? "system" : mine ? "assistant" : "user";
    let content = contentText(m.content);
    // Another agent's turn arrives as a user turn. Many OpenAI-compatible servers (llama.cpp,
    // older Ollama) drop `name`, so the speaker is also written into the text, or a model in a
    // multi-agent talk could not tell who said what.
    if (role === "user" && m.role === "assistant") content = `${m.name}: ${content}`;
    const msg: ChatMessage = { role, content };
    const name = speakerName(m.name);
    if (name) msg.name = name;
    out.push(msg);
  }
  return out;
}

/** `content` as prompt text: strings as they are, anything else as JSON. */
export function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (content === undefined || content === null) return "";
  try {
    return JSON.stringify(content) ?? String(content);
  } catch {
    return String(content);
  }
}

/** A name the OpenAI API accepts (`^[a-zA-Z0-9_-]{1,64}$`), or undefined if nothing is left. */
export function speakerName(name: string): string | undefined {
  const s = name.replace(/[^a-zA-Z0-9_-]+/g, "_").slice(0, 64);
  return /[a-zA-Z0-9]/.test(s) ? s : undefined;
}
