/**
 * `@dist`, `@asyncFunc`, `@syncFunc` and `@streamFunc`: standard TC39 decorators that also accept the legacy
 * (`experimentalDecorators`) call shape, since which one applies depends on the tsconfig in
 * the user's working directory.
 */
import { DIST_ENTRY, LEGACY_KINDS, RPC_KINDS, registerClass, type ClassEntry, type MethodKind } from "./registry.ts";

/** Own property of a `@dist` instance: the arguments its most-derived constructor received. */
export const CTOR_ARGS = Symbol.for("actorscope.ctorArgs");

const THIS_FILE = import.meta.path;

/**
 * Class decorator: registers the class by name, records where it is defined (so a child
 * server can import that module) and captures constructor arguments, so `x.toDist()` can
 * rebuild `x` on a server.
 *
 * @example
 * @dist class Counter extends Distributable { n = 0; inc() { return ++this.n; } }
 */
export function dist<C extends abstract new (...args: any[]) => any>(value: C, _context?: unknown): C {
  if (typeof value !== "function") throw new TypeError("@dist decorates classes");
  const name = value.name;
  // Returning a subclass is the one way to see the arguments of *this* class's constructor:
  // a base-class constructor only sees what subclasses pass to super().
  const Wrapped = class extends (value as unknown as new (...a: unknown[]) => object) {
    constructor(...args: unknown[]) {
      super(...args);
      Object.defineProperty(this, CTOR_ARGS, { value: args, configurable: true, writable: true, enumerable: false });
    }
  };
  Object.defineProperty(Wrapped, "name", { value: name });
  const entry: ClassEntry = { cls: Wrapped, name };
  const where = callerModule();
  if (where?.module) entry.module = where.module;
  if (where?.unimportable) entry.unimportable = where.unimportable;
  Object.defineProperty(Wrapped, DIST_ENTRY, { value: entry, enumerable: false });
  registerClass(entry);
  return Wrapped as unknown as C;
}

/**
 * Method decorator: a remote call returns an AsyncResult at once; the method runs under the
 * server's `capacity` and its result lands in the result pool.
 */
export function asyncFunc(...a: unknown[]): any {
  return mark("async", a);
}

/** Method decorator: the remote call answers when the method is done (the default). */
export function syncFunc(...a: unknown[]): any {
  return mark("sync", a);
}

/**
 * Method decorator: the method returns an AsyncIterable (an `async *` method needs no mark)
 * and a remote call returns a `RemoteStream` of its items at once.
 *
 * @example
 * @streamFunc lines(): AsyncIterable<string> { return this.#source.lines(); }
 */
export function streamFunc(...a: unknown[]): any {
  return mark("stream", a);
}

function mark(kind: MethodKind, a: unknown[]): unknown {
  const ctx = a[1] as { kind?: string; name?: unknown; metadata?: Record<PropertyKey, unknown> } | string | undefined;
  if (a.length === 2 && typeof ctx === "object" && ctx?.kind === "method") {
    const md = ctx.metadata;
    if (!md) throw new Error("decorator metadata is unavailable in this runtime");
    if (!Object.hasOwn(md, RPC_KINDS)) md[RPC_KINDS] = Object.create((md[RPC_KINDS] as object | undefined) ?? null);
    (md[RPC_KINDS] as Record<string, string>)[String(ctx.name)] = kind;
    return a[0];
  }
  // Legacy shape: (prototype, key, descriptor).
  const proto = a[0] as Record<PropertyKey, unknown>;
  const key = a[1];
  if (proto && (typeof key === "string" || typeof key === "symbol")) {
    if (!Object.hasOwn(proto, LEGACY_KINDS)) {
      Object.defineProperty(proto, LEGACY_KINDS, { value: Object.create(null), enumerable: false });
    }
    (proto[LEGACY_KINDS] as Record<string, string>)[String(key)] = kind;
    return a[2];
  }
  throw new TypeError(`@${kind}Func decorates methods`);
}

function isImportableFile(x: string): boolean {
  if (x.startsWith("file://")) return !x.startsWith("file:///$bunfs/");
  return x.startsWith("/") && !x.startsWith("/$bunfs/");
}

/**
 * The file of the first stack frame outside this module: where the decorated class is. Code
 * run by `bun -e` or a REPL has a pseudo file name in brackets (`/cwd/[eval]`) that no other
 * process can import; that is reported as `unimportable`, not as a module.
 */
function callerModule(): { module?: string; unimportable?: string } | undefined {
  const orig = Error.prepareStackTrace;
  try {
    Error.prepareStackTrace = (_e, frames) => frames.map((f) => f.getFileName() ?? "");
    const holder: { stack?: unknown } = {};
    Error.captureStackTrace(holder);
    const files = holder.stack as string[];
    // Only real files count: bun:/node: internals and, inside a compiled binary, its own
    // frames (under /$bunfs/, or source-mapped to relative names) are not importable.
    const f = files.find((x) => x !== THIS_FILE && isImportableFile(x));
    if (!f) return undefined;
    const pseudo = /(?:^|\/)\[([^\]/]*)\]$/.exec(f);
    if (pseudo) return { unimportable: pseudo[1] === "eval" ? "`bun -e` code ([eval])" : `[${pseudo[1]}] (not a module file)` };
    return { module: f.startsWith("file://") ? f : Bun.pathToFileURL(f).href };
  } finally {
    Error.prepareStackTrace = orig;
  }
}
