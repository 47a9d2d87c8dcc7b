/**
 * The class registry and each class's remote surface. `@dist` records a class here by its
 * name together with the module that defines it (so a child server can import that module);
 * servers build their own tables from it (`classTable`), so a client never decides what a
 * server may construct.
 */
import { AgentCreationError } from "./errors.ts";
import type { ClassInfo } from "./protocol.ts";

/** Any constructor. */
export type AnyClass = abstract new (...args: never[]) => unknown;

/** Where and how a class was registered. */
export interface ClassEntry {
  cls: AnyClass;
  name: string;
  /** file:// URL (or path) of the module that defined the class, when it could be found. */
  module?: string;
  /**
   * Set when the class was defined where no other process can import it from (`bun -e`, a
   * REPL): says where, so child mode can refuse it with a useful message instead of a child
   * failing to import a module that does not exist.
   */
  unimportable?: string;
}

const METADATA = Symbol.for("Symbol.metadata");
/** How a method is called remotely: answered when done, by a task id, or as a stream. */
export type MethodKind = "async" | "sync" | "stream";
/** Key in decorator metadata: own-or-inherited map of method name → MethodKind. */
export const RPC_KINDS = "actorscope:kinds";
/** Marker on classes made by `@dist`. */
export const DIST_ENTRY = Symbol.for("actorscope.dist");

/** Names never reachable remotely, whatever the class defines. */
const FORBIDDEN: ReadonlySet<string> = new Set([
  "constructor", "__proto__", "prototype", "then", "toDist", "oid",
  ...Object.getOwnPropertyNames(Object.prototype),
]);

/** True if `name` may be called or read remotely. */
export function isReachableName(name: string): boolean {
  return typeof name === "string" && name.length > 0 && name[0] !== "_" && name[0] !== "#" && !FORBIDDEN.has(name);
}

const byName = new Map<string, ClassEntry[]>();

/**
 * Register a class (done by `@dist`). Several modules may define classes of the same name: a
 * child server finds its class by name *and* module, so they do not clash there; a table of
 * classes a server creates by name refuses the clash instead (`classTable`). The same module
 * evaluated again (re-imported) replaces its earlier registration.
 */
export function registerClass(entry: ClassEntry): void {
  const list = byName.get(entry.name);
  if (!list) {
    byName.set(entry.name, [entry]);
    return;
  }
  if (list.some((e) => e.cls === entry.cls)) return;
  const same = entry.module === undefined ? -1 : list.findIndex((e) => e.module === entry.module);
  if (same >= 0) list[same] = entry;
  else list.push(entry);
}

/** The registration of a class, or undefined when it was not made with `@dist`. */
export function entryOf(cls: Function): ClassEntry | undefined {
  // Own property only: an undecorated subclass inherits statics but is not itself registered.
  return Object.hasOwn(cls, DIST_ENTRY) ? (cls as unknown as Record<symbol, ClassEntry>)[DIST_ENTRY] : undefined;
}

/** Registered classes named `name`, optionally only those defined in `module`. */
export function findClass(name: string, module?: string): ClassEntry | undefined {
  const list = byName.get(name);
  if (!list) return undefined;
  if (module) return list.find((e) => e.module === module) ?? list[list.length - 1];
  return list[list.length - 1];
}

/** Is a class named `name` registered from exactly `module`? (What a child server checks after importing it.) */
export function isRegisteredIn(name: string, module: string): boolean {
  return byName.get(name)?.some((e) => e.module === module) ?? false;
}

/** Every registered class (latest registration per name). */
export function allClasses(): ClassEntry[] {
  return [...byName.values()].map((l) => l[l.length - 1]!);
}

/** Every registration, one per defining module, for every name. */
export function allEntries(): ClassEntry[] {
  return [...byName.values()].flat();
}

/** Where a class was defined, for messages. */
export function whereDefined(cls: Function): string {
  const e = entryOf(cls);
  if (e?.unimportable) return e.unimportable;
  const m = e?.module;
  if (!m) return "built in";
  return m.startsWith("file://") ? Bun.fileURLToPath(m) : m;
}

/**
 * Name → class for a server that creates objects by class name. Two different classes of
 * one name would make the name ambiguous (which one a client gets would depend on load
 * order), so that is an AgentCreationError (ALREADY_EXISTS) naming both definitions. The
 * same class listed twice is fine, and so is a module evaluated again (the later class wins).
 *
 * @example
 * const table = classTable(await loadAgentsFromDir("./agents"));
 */
export function classTable(classes: Iterable<Function>): Map<string, AnyClass> {
  const table = new Map<string, AnyClass>();
  for (const c of classes) {
    if (typeof c !== "function") throw new TypeError("agent classes must be classes");
    const e = entryOf(c);
    const cls = (e?.cls ?? c) as AnyClass;
    const name = e?.name ?? c.name;
    const had = table.get(name);
    // The same module evaluated twice (re-imported) is the same class: the later one serves.
    if (had && had !== cls && !sameModule(had, cls)) {
      throw new AgentCreationError(
        `two different @dist classes are named ${name}: one in ${whereDefined(had)}, one in ${whereDefined(cls)}. ` +
          "A server creates objects by class name, so the name must be unique: rename one of them.",
        { code: "ALREADY_EXISTS" },
      );
    }
    table.set(name, cls);
  }
  return table;
}

function sameModule(a: Function, b: Function): boolean {
  const m = entryOf(a)?.module;
  return m !== undefined && m === entryOf(b)?.module;
}

/** A class's remote surface with sets for fast lookups. */
export type ClassSurface = ClassInfo & { streams: string[]; asyncSet: ReadonlySet<string>; methodSet: ReadonlySet<string>; streamSet: ReadonlySet<string> };

const infoCache = new WeakMap<Function, ClassSurface>();

const ASYNC_GENERATOR_FUNCTION: unknown = Object.getPrototypeOf(async function* () {});

function isAsyncGenerator(f: unknown): boolean {
  return typeof f === "function" && Object.getPrototypeOf(f) === ASYNC_GENERATOR_FUNCTION;
}

/**
 * The remote surface of a class: public methods on its prototype chain (up to, not
 * including, Object.prototype) and which of them are async. Async-ness is inherited: a
 * subclass override of an `@asyncFunc` method stays async unless marked `@syncFunc`.
 */
export function classInfo(cls: Function): ClassSurface {
  const hit = infoCache.get(cls);
  if (hit) return hit;
  const methods = new Set<string>();
  for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (!isReachableName(k) || methods.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(p, k);
      if (d && typeof d.value === "function") methods.add(k);
    }
  }
  const kinds = kindsOf(cls);
  const asyncSet = new Set([...methods].filter((m) => kinds[m] === "async"));
  // An `async *` method streams unless marked otherwise; `@streamFunc` marks any other.
  const streamSet = new Set([...methods].filter((m) => kinds[m] === "stream" || (kinds[m] === undefined && isAsyncGenerator(cls.prototype[m]))));
  const info = {
    cls: entryOf(cls)?.name ?? cls.name,
    methods: [...methods],
    async: [...asyncSet],
    streams: [...streamSet],
    asyncSet,
    methodSet: methods,
    streamSet,
  };
  infoCache.set(cls, info);
  return info;
}

/** Method kinds recorded by the decorators (standard metadata or legacy static map). */
function kindsOf(cls: Function): Record<string, MethodKind> {
  const md = (cls as unknown as Record<symbol, Record<string, unknown> | undefined>)[METADATA];
  const fromMeta = (md?.[RPC_KINDS] as Record<string, MethodKind> | undefined) ?? {};
  const out: Record<string, MethodKind> = {};
  // Walk base → derived so derived marks win; legacy marks live on each class's prototype.
  const chain: object[] = [];
  for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) chain.unshift(p);
  for (const p of chain) {
    const legacy = Object.hasOwn(p, LEGACY_KINDS) ? (p as Record<symbol, Record<string, MethodKind>>)[LEGACY_KINDS] : undefined;
    if (legacy) Object.assign(out, legacy);
  }
  for (const k in fromMeta) out[k] = fromMeta[k]!;
  return out;
}

/** Where legacy (experimentalDecorators) method marks are kept, per prototype. */
export const LEGACY_KINDS = Symbol.for("actorscope.legacyKinds");

/** Brand on `Distributable.prototype`: lets the codec spot local objects without importing the class. */
export const IS_DISTRIBUTABLE = Symbol.for("actorscope.distributable");
