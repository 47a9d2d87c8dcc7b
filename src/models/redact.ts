/**
 * Keeping API keys out of everything actorscope prints or sends: error messages, logs,
 * `toJSON`, agent lists. Every key a model config carries is registered here when the config
 * is loaded, and `redact()` replaces registered keys (plus the common shapes of credentials
 * it has never seen) with `***`.
 */

/** What a masked secret reads as. */
export const MASK = "***";

/**
 * Secrets shorter than this are not registered: masking a 3-letter string would mangle
 * every message it happens to occur in, and such a string protects nothing anyway.
 */
const MIN_SECRET = 4;

/**
 * Most secrets kept; past it the oldest registered are forgotten first. Model configs are
 * bounded (store.ts), but a peer replacing configs again and again with new keys would
 * otherwise grow this set for ever.
 */
export const MAX_SECRETS = 262_144;

/** Registered secrets, in registration order (a Set keeps it; the oldest is evicted first). */
const secrets = new Set<string>();
/**
 * Secrets indexed by their first MIN_SECRET characters, each bucket longest first once
 * sorted. Registration only appends and marks the bucket unsorted: registering n secrets is
 * O(n), never a re-sort of everything per secret (which made 40k configs take seconds).
 */
const buckets = new Map<string, { list: string[]; sorted: boolean }>();

/** Key names whose values are credentials, wherever they appear in a config. */
const SECRET_NAME = /(^|[_-])(api[_-]?key|apikey|key|token|secret|password|passwd|authorization|auth|cookie|credentials?)$/i;

/** Credential shapes masked even when never registered (keys typed into prompts, URLs, echoes). */
const PATTERNS: Array<[RegExp, string]> = [
  [/\bBearer\s+[A-Za-z0-9._~+/=-]{4,}/gi, `Bearer ${MASK}`],
  [/\bsk-[A-Za-z0-9_-]{8,}/g, `sk-${MASK}`],
  [/(["']?(?:api[_-]?key|apikey|x-api-key|access[_-]?token|secret|password)["']?\s*[:=]\s*["']?)[^"'\s,;&}]+/gi, `$1${MASK}`],
  [/([?&](?:key|token|api[_-]?key|access[_-]?token|sig|signature)=)[^&#\s"']+/gi, `$1${MASK}`],
  [/(\/\/[^/@\s:]+:)[^/@\s]+@/g, `$1${MASK}@`],
];

/** Remember `value` as a secret to mask from now on (ignored unless a non-trivial string). O(1). */
export function registerSecret(value: unknown): void {
  if (typeof value !== "string" || value.length < MIN_SECRET || secrets.has(value)) return;
  if (secrets.size >= MAX_SECRETS) forget(secrets.values().next().value as string);
  secrets.add(value);
  const key = value.slice(0, MIN_SECRET);
  const b = buckets.get(key);
  if (b) {
    b.list.push(value);
    b.sorted = false;
  } else buckets.set(key, { list: [value], sorted: true });
}

/** Drop the oldest secret; its bucket entry is pruned at the bucket's next sort (no O(bucket) work here). */
function forget(value: string): void {
  secrets.delete(value);
  const b = buckets.get(value.slice(0, MIN_SECRET));
  if (b) b.sorted = false;
}

/** How many secrets are registered (for tests and metrics). */
export function secretCount(): number {
  return secrets.size;
}

/** Is `name` the name of a field that holds a credential (`api_key`, `Authorization`, `x-api-key`, …)? */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/**
 * Register every credential in a model config: `api_key`, and any field or header whose
 * name says it holds one (at any depth, e.g. `headers.Authorization`, `client_args.api_key`).
 */
export function registerConfigSecrets(config: unknown, depth = 0): void {
  if (config === null || typeof config !== "object" || depth > 8) return;
  for (const [k, v] of Object.entries(config)) {
    if (typeof v === "string") {
      if (isSecretName(k)) {
        registerSecret(v);
        // "Bearer abc…": the token alone must be masked too, wherever it shows up without the scheme.
        const m = /^\s*(?:Bearer|Basic|Token)\s+(\S+)\s*$/i.exec(v);
        if (m?.[1]) registerSecret(m[1]);
      }
    } else registerConfigSecrets(v, depth + 1);
  }
}

/**
 * `text` with every registered secret and every recognisable credential replaced by `***`.
 *
 * @example
 * registerSecret("sk-live-123456");
 * redact("401: bad key sk-live-123456"); // "401: bad key sk-***" (or "***")
 */
export function redact(text: string): string {
  let out = secrets.size ? maskRegistered(String(text)) : String(text);
  for (const [re, to] of PATTERNS) out = out.replace(re, to);
  return out;
}

/**
 * One left-to-right pass: at each position, the longest registered secret starting there is
 * masked. Cost grows with the text's length (one bucket lookup per position), not with the
 * number of secrets.
 */
function maskRegistered(text: string): string {
  if (text.length < MIN_SECRET) return text;
  let out = "";
  let from = 0;
  for (let i = 0; i + MIN_SECRET <= text.length; ) {
    const b = buckets.get(text.slice(i, i + MIN_SECRET));
    const hit = b ? longestAt(b, text, i) : undefined;
    if (hit === undefined) {
      i++;
      continue;
    }
    out += text.slice(from, i) + MASK;
    i += hit.length;
    from = i;
  }
  return from === 0 ? text : out + text.slice(from);
}

function longestAt(b: { list: string[]; sorted: boolean }, text: string, i: number): string | undefined {
  if (!b.sorted) {
    b.list = b.list.filter((s) => secrets.has(s)).sort((x, y) => y.length - x.length);
    b.sorted = true;
  }
  for (const s of b.list) if (text.startsWith(s, i)) return s;
  return undefined;
}

/**
 * A deep copy of a config safe to print: credential fields masked, other strings redacted.
 *
 * @example
 * console.log(redactConfig(getModelConfig("gpt")!)); // { ..., api_key: "***" }
 */
export function redactConfig<T>(config: T): T {
  return maskDeep(config, 0) as T;
}

function maskDeep(v: unknown, depth: number): unknown {
  if (typeof v === "string") return redact(v);
  if (v === null || typeof v !== "object" || depth > 8) return v;
  if (Array.isArray(v)) return v.map((x) => maskDeep(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    // defineProperty: a key named "__proto__" stays a plain field of the copy.
    const masked = typeof x === "string" && isSecretName(k) ? MASK : maskDeep(x, depth + 1);
    Object.defineProperty(out, k, { value: masked, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
