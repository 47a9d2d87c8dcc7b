/**
 * The body of a child server, shared by `bun src/server/child/main.ts` and the compiled
 * `as-server __child` entry.
 */
import { findClass, isRegisteredIn } from "../../core/registry.ts";
import { setProcessLimits } from "../../client/refs.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { IpcTransport, RelayedTransport, type IpcFrame } from "../../client/transports/ipc.ts";
import { ServerConnection } from "../../client/connection.ts";
import { addressKey, connectionFor, setToken } from "../../client/connections.ts";
import { runtime } from "../../client/runtime.ts";
import { refusedDuringImport, setChildImport } from "../../client/child-server.ts";
import { encodeValue } from "../../core/codec.ts";
import { decodeValue } from "../../core/codec-decode.ts";
import { AgentServerNotAliveError, errorToWire } from "../../core/errors.ts";
import type { Request, Response } from "../../core/protocol.ts";
import { setChildListener } from "../../client/refs.ts";
import type { Address } from "../../core/transport.ts";
import { LocalPool } from "../pool/local.ts";
import { Servicer } from "../servicer.ts";
import { bindIpc } from "../bindings/ipc.ts";
import { answerCallback } from "../../client/callback-answer.ts";
import { CHILD_SPARE, type ChildConfFrame, type ChildConfig, type ChildFatalFrame, type ChildSpareFrame, type SpareConfig } from "../../core/child-config.ts";

/**
 * Import the modules of the child's classes. Undefined when they loaded and define the
 * classes; a fatal frame for the two mistakes a user needs told plainly: the module's top
 * level called `toDist()` (a script without the `if (import.meta.main)` guard — every child
 * would spawn another), or it does not define the class at its top level. Any other import
 * error is thrown as before: the child exits and the parent reports its stderr.
 */
async function importClassModules(conf: ChildConfig, imported: readonly string[] = []): Promise<ChildFatalFrame | undefined> {
  const modules = conf.modules ?? [];
  const classes = conf.classes ?? [];
  // A spare imported them already (and would have exited on a refusal): only the classes are left to check.
  if (modules.every((m) => imported.includes(m))) {
    setChildImport(conf.depth ?? 1);
    return missingClass(modules[0], classes);
  }
  // A refused `toDist()` inside an unawaited async function surfaces as an unhandled
  // rejection; it is reported as the fatal frame, not as a crash with a stack trace.
  const swallowRefusal = (reason: unknown): void => {
    if (reason !== undefined && reason === refusedDuringImport()) return;
    console.error(reason);
    process.exit(1);
  };
  process.on("unhandledRejection", swallowRefusal);
  try {
    for (const m of modules) {
      setChildImport(conf.depth ?? 1, { module: m, classes });
      try {
        await import(m);
      } catch (e) {
        if (!refusedDuringImport()) throw e;
      } finally {
        setChildImport(conf.depth ?? 1);
      }
    }
    // Let rejections of the module's top level be seen before deciding.
    await new Promise<void>((r) => setImmediate(r));
  } finally {
    process.off("unhandledRejection", swallowRefusal);
  }
  const refused = refusedDuringImport();
  if (refused) return { k: "fatal", message: refused.message, code: refused.code };
  return missingClass(modules[0], classes);
}

/** The fatal frame for the first of `classes` that importing `module` did not register, if any. */
function missingClass(module: string | undefined, classes: readonly string[]): ChildFatalFrame | undefined {
  if (module === undefined) return undefined;
  const missing = classes.filter((c) => !isRegisteredIn(c, module));
  if (missing.length === 0) return undefined;
  const file = module.startsWith("file://") ? Bun.fileURLToPath(module) : module;
  const name = missing[0]!;
  return {
    k: "fatal",
    code: "NOT_FOUND",
    message:
      `class ${name} is not defined at the top level of ${file}: the child server imported that module ` +
      `and no @dist class named ${name} was registered. A class declared inside a function or a block ` +
      "exists only in the process that ran that code; declare it at the top level of a module file and export it.",
  };
}

/** Tell the parent why this child cannot serve, then exit (the parent kills it on receipt, too). */
function reportFatal(frame: ChildFatalFrame): Promise<void> {
  const exit = (): never => process.exit(3);
  // Exit once the frame is written; the timer covers a parent that never reads it.
  setTimeout(exit, 2000);
  try {
    process.send!(frame, undefined, undefined, exit);
  } catch {
    exit();
  }
  return new Promise<void>(() => {});
}

/**
 * The entry of every child process: `json` is its config, or `CHILD_SPARE` for a warm pool's
 * spare, which loads the runtime first (the library, what `runChild` uses), tells the parent,
 * and becomes the child server whose config the parent sends later (for a spare this returns
 * once it waits). A spare exits with its parent like any child (IPC disconnect, SIGTERM, SIGINT).
 */
export async function childMain(json: string | undefined): Promise<void> {
  if (!json?.startsWith(CHILD_SPARE)) return runChild(json);
  if (!process.send) return runChild(undefined);
  const spare = JSON.parse(json.slice(CHILD_SPARE.length)) as SpareConfig;
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
  await import("../../index.ts");
  const { rehearse } = await import("./rehearse.ts");
  await rehearse();
  // The class modules children of this parent used before: imported now, like a child would,
  // so the next one costs nothing. A module that fails (or calls toDist() at its top level)
  // ends the spare quietly; the parent then stops preloading.
  if (spare.modules.length) {
    try {
      if (await importClassModules({ id: "", key: "", capacity: 0, maxQueue: 0, maxPoolSize: 0, maxExpireTime: 0, maxTimeoutSeconds: 0, modules: spare.modules, depth: spare.depth })) process.exit(0);
    } catch {
      process.exit(0);
    }
  }
  // JSC compiles a function when it is first called: runChild's body took ~0.8 ms to compile
  // after the config arrived (traced). Compiled now, while the spare waits.
  await runChild(undefined, undefined, true);
  // Frames after the config (the parent sends its first create right behind it) are held
  // until the child server takes over the channel. The server starts from this handler, and
  // this function returns now: the entry module's evaluation (its top-level await) ends while
  // the spare waits. Bun collects the heap when it ends; with the wait inside that evaluation,
  // the collection came in the turn after the config and held the first create's answer ~2 ms
  // (traced).
  const held: unknown[] = [];
  let conf: string | undefined;
  const onFrame = (m: unknown): void => {
    const f = m as ChildConfFrame | null;
    if (conf !== undefined) held.push(m);
    else if (f?.k === "conf" && typeof f.json === "string") {
      conf = f.json;
      runChild(conf, { imported: spare.modules, held, release: () => process.off("message", onFrame) }).catch(crashed);
    }
  };
  process.on("message", onFrame);
  // Announced a timer turn later, once the entry module has finished and the garbage of
  // loading is collected: a spare taken at once then has nothing left to collect.
  setTimeout(() => {
    Bun.gc(true);
    process.send!({ k: "spare", pid: process.pid, modules: spare.modules, probe: new Uint8Array(64) } satisfies ChildSpareFrame);
  }, 0);
}

/** A child server that failed to start outside its entry module's evaluation ends as it would have there. */
function crashed(e: unknown): never {
  console.error(e);
  process.exit(1);
}

/** What a spare hands the child server it becomes. */
interface FromSpare {
  /** Class modules it imported already. */
  imported: readonly string[];
  /** Frames that came after the config, in order. */
  held: unknown[];
  /** Stop holding frames (the server's own listener is on). */
  release(): void;
}

/**
 * Start a child server from its JSON config and serve until the parent disconnects.
 * `compileOnly` returns at once: a spare calls it so to have the function compiled.
 */
export async function runChild(json: string | undefined, spare?: FromSpare, compileOnly = false): Promise<void> {
  if (compileOnly) return;
  const send = process.send?.bind(process);
  if (!send) {
    console.error("as-server: a child server must be spawned with an IPC channel");
    process.exit(2);
  }
  // A child never outlives its parent.
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
  if (json === undefined) {
    console.error("as-server: a child server needs its config in AS_CHILD_CONFIG");
    process.exit(2);
  }
  const conf = JSON.parse(json) as ChildConfig;
  const limits = { ...DEFAULT_LIMITS, ...(conf.maxMessageBytes ? { maxMessageBytes: conf.maxMessageBytes } : {}) };
  setProcessLimits(limits);
  // The library's own agents (DialogAgent…) are always creatable; then the class's module.
  if (!spare) await import("../../index.ts");
  const fatal = await importClassModules(conf, spare?.imported);
  if (fatal) return reportFatal(fatal);
  for (const [hostPort, token] of Object.entries(conf.tokens ?? {})) setToken(hostPort, token);
  if (conf.modelConfigs !== undefined) {
    const { init } = await import("../../models/init.ts");
    init({ modelConfigs: conf.modelConfigs as never });
  }
  const servicer = new Servicer({
    serverId: conf.id,
    address: { host: "localhost", child: conf.id },
    resolveClass: (name) => findClass(name, conf.modules?.[0])?.cls,
    capacity: conf.capacity,
    maxQueue: conf.maxQueue,
    ...(conf.streamWindow === undefined ? {} : { streamWindow: conf.streamWindow }),
    pool: new LocalPool({ maxPoolSize: conf.maxPoolSize, maxExpireTime: conf.maxExpireTime }),
    maxTimeoutSeconds: conf.maxTimeoutSeconds,
    limits,
    onStop: () => process.exit(0),
    // Reachable over loopback gRPC once it listens, so it takes model configs like any server.
    setModelConfigs: async (c) => {
      const { applyModelConfigs } = await import("../../models/init.ts");
      applyModelConfigs(c as never, { fromPeer: true });
    },
  });
  let listening: Promise<Response> | undefined;
  const listen = (): Promise<Response> =>
    (listening ??= (async (): Promise<Response> => {
      try {
        // gRPC is loaded only now: a child nobody needs to reach over the network never loads it.
        const { bindGrpc } = await import("../bindings/grpc/binding.ts");
        const b = await bindGrpc({ servicer, bindHost: "127.0.0.1", port: 0, token: conf.key, maxMessageBytes: limits.maxMessageBytes });
        const address = { host: "127.0.0.1", port: b.port, child: conf.id, key: conf.key };
        servicer.opts.address = address;
        setChildListener(conf.id, address);
        return { t: "value", value: encodeValue(address) };
      } catch (e) {
        listening = undefined;
        return { t: "error", error: errorToWire(e) };
      }
    })());
  // Callbacks this child handed on are called back here (relayed by parents): answered from its own table.
  const onFrame = bindIpc(servicer, (f: IpcFrame) => send(f), listen, (req) => answerCallback(req, "ipc"));
  // Other child servers are reached through the parent, which relays requests to them.
  // Requests going up are relayed by the parent, which reads them as object frames.
  const upward = new IpcTransport({ send: (f) => send(f) }, "parent", { binary: false });
  const self: Address = { host: "localhost", child: conf.id };
  const routed = new Map<string, ServerConnection>();
  // This child's link to its parent, configured once: other child servers are reached through
  // the parent, and so is any child's listener (this one's included, through the same path).
  runtime.configureChild({
    route: (a) => {
      const k = addressKey(a);
      let c = routed.get(k);
      if (!c) routed.set(k, (c = new ServerConnection(new RelayedTransport(upward, a, self), a)));
      return c;
    },
    listen: async (child) => {
      if (child === conf.id) {
        const r = await listen();
        if (r.t !== "value") throw new AgentServerNotAliveError(`cannot open a listener: ${r.t === "error" ? r.error.message : r.t}`);
        return decodeValue(r.value) as Address;
      }
      const c = await connectionFor({ host: "localhost", child }).value({ t: "listen" });
      return decodeValue(c) as Address;
    },
    callParent: (req) => upward.request(req),
  });
  const dispatch = (f: unknown): void => {
    if ((f as IpcFrame | null)?.k === "a") upward.deliver(f as IpcFrame);
    else onFrame(f);
  };
  process.on("message", dispatch);
  spare?.release();
  send({ k: "ready", pid: process.pid, id: conf.id } satisfies IpcFrame);
  for (const f of spare?.held.splice(0) ?? []) dispatch(f);
}
