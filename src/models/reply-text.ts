/**
 * Finding the reply text in the JSON a chat API answered, whatever API it is: the shapes of
 * OpenAI, AgentScope's post_api_chat, Ollama, DashScope, Anthropic, Gemini and Hugging Face.
 */

type Path = ReadonlyArray<string | number>;

/** Where the reply text is, most specific shapes first. */
const SHAPES: readonly Path[] = [
  ["choices", 0, "message", "content"], // OpenAI chat completions (and every compatible server)
  ["choices", 0, "text"], // OpenAI completions
  ["data", "response", "choices", 0, "message", "content"], // AgentScope's post_api_chat
  ["message", "content"], // Ollama /api/chat
  ["output", "choices", 0, "message", "content"], // DashScope, message format
  ["output", "text"], // DashScope, text format
  ["content"], // Anthropic messages (content blocks), or a plain {content}
  ["candidates", 0, "content", "parts"], // Gemini
  ["response"], // Ollama /api/generate
  ["text"],
  ["result"],
  ["generated_text"], // Hugging Face TGI
  [0, "generated_text"], // Hugging Face inference API
  ["output"],
];

/**
 * The reply text of a chat API answer, or undefined if it has none of the known shapes.
 *
 * @example
 * replyText({ choices: [{ message: { content: "hi" } }] }); // "hi"
 * replyText({ message: { role: "assistant", content: "hi" } }); // "hi" (Ollama)
 */
export function replyText(body: unknown): string | undefined {
  for (const path of SHAPES) {
    const t = textOf(dig(body, path));
    if (t !== undefined) return t;
  }
  return undefined;
}

/** A string, or the text parts of a content-block list (`[{type:"text", text}]`, Gemini `parts`). */
export function textOf(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (!Array.isArray(v) || v.length === 0) return undefined;
  const parts: string[] = [];
  for (const p of v) {
    if (typeof p === "string") parts.push(p);
    else if (p !== null && typeof p === "object" && typeof (p as { text?: unknown }).text === "string") parts.push((p as { text: string }).text);
  }
  return parts.length ? parts.join("") : undefined;
}

function dig(v: unknown, path: Path): unknown {
  let cur = v;
  for (const k of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (typeof k === "number" ? !Array.isArray(cur) : Array.isArray(cur) || !Object.hasOwn(cur, k)) return undefined;
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return cur;
}
