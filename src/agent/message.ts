/** Who speaks in a message. */
export type Role = "system" | "user" | "assistant";

/** Fields accepted by `new Msg(...)`. */
export interface MsgInit {
  /** The speaker's name. */
  name: string;
  /** Anything the codec carries: text, content blocks, objects. */
  content?: unknown;
  /** Defaults to `"assistant"`. */
  role?: Role;
  /** Structured payload travelling with the message (the seed examples put data here). */
  metadata?: unknown;
  /** One or more URLs (files, images) attached to the message. */
  url?: string | string[];
  /** Kept when a message is rebuilt from the wire; generated otherwise. */
  id?: string;
  /** Kept when a message is rebuilt from the wire; generated otherwise. */
  timestamp?: string;
}

const ROLES: ReadonlySet<string> = new Set(["system", "user", "assistant"]);

/**
 * A message between agents, the unit of AgentScope conversations. It crosses the wire as
 * itself (id and timestamp kept), so memory de-duplication by `id` works across servers.
 *
 * @example
 * const m = new Msg({ name: "user", role: "user", content: "hi", metadata: { value: 1 } });
 */
export class Msg {
  /** 32 hex characters, unique per message. */
  readonly id: string;
  name: string;
  content: unknown;
  role: Role;
  metadata: unknown;
  url: string | string[] | undefined;
  /** Local time of creation, `YYYY-MM-DD HH:MM:SS`. */
  readonly timestamp: string;

  constructor(init: MsgInit) {
    if (!init || typeof init.name !== "string") throw new TypeError("Msg needs a string `name`");
    const role = init.role ?? "assistant";
    if (!ROLES.has(role)) throw new TypeError(`Msg role must be system, user or assistant, not ${String(role)}`);
    this.id = init.id ?? crypto.randomUUID().replaceAll("-", "");
    this.name = init.name;
    this.content = init.content;
    this.role = role;
    this.metadata = init.metadata;
    this.url = init.url;
    this.timestamp = init.timestamp ?? formatTimestamp(new Date());
  }

  /** A plain-object form, for logs and JSON. */
  toJSON(): Required<Omit<MsgInit, "url">> & { url?: string | string[] } {
    const o: Required<Omit<MsgInit, "url">> & { url?: string | string[] } = {
      id: this.id,
      name: this.name,
      content: this.content,
      role: this.role,
      metadata: this.metadata,
      timestamp: this.timestamp,
    };
    if (this.url !== undefined) o.url = this.url;
    return o;
  }
}

function formatTimestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
