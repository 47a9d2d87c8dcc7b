/**
 * Loading agent classes from user files (`customAgentClasses` from a file, `--agent-dir`).
 *
 * SECURITY: this EXECUTES the files. Importing a module runs its top-level code with the
 * server's rights, exactly like AgentScope's `load_agents_from_dir` exec'd Python files.
 * Only point it at code you trust. (What a *client* can never do is make a server load
 * code: servers create only classes registered here or passed to the launcher.)
 */
import { allEntries, classTable, entryOf } from "../core/registry.ts";

const LOADABLE = /\.(ts|js|mts|mjs)$/;
const SKIPPED = /(\.d\.ts|\.test\.ts)$/;

/**
 * Import one file and return the `@dist` classes it defines: its exported classes that are
 * registered, plus registered classes whose module is this file (exported or not).
 * Rejects with the import error if the file fails to load, and with an AgentCreationError
 * (ALREADY_EXISTS) naming both definitions if two different classes in it share a name.
 *
 * @example
 * const classes = await loadCustomClassFromFile("./agents/web.ts");
 * new RpcAgentServerLauncher({ customAgentClasses: classes });
 */
export async function loadCustomClassFromFile(file: string): Promise<Function[]> {
  const found = await importClasses(file);
  classTable(found);
  return [...found];
}

/** Import `file`; the `@dist` classes it exports or defines. */
async function importClasses(file: string): Promise<Set<Function>> {
  // The real path: `@dist` records the module by the path Bun resolved, symlinks followed.
  const [{ realpath }, { resolve }] = await Promise.all([import("node:fs/promises"), import("node:path")]);
  const url = Bun.pathToFileURL(await realpath(resolve(file))).href;
  const mod = (await import(url)) as Record<string, unknown>;
  const found = new Set<Function>();
  for (const v of Object.values(mod)) if (typeof v === "function" && entryOf(v)) found.add(v);
  for (const e of allEntries()) if (e.module === url) found.add(e.cls as unknown as Function);
  return found;
}

/**
 * Import every `.ts`/`.js`/`.mts`/`.mjs` file under `dir` (recursively, in name order;
 * `node_modules`, dot-files and dot-directories, `*.d.ts` and `*.test.ts` are skipped) and return the
 * `@dist` classes they define. Files may import their siblings. A file that fails to load is
 * reported with a warning naming it and skipped; the others still load. Two different classes
 * of one name (in one file or two) reject with an AgentCreationError (ALREADY_EXISTS) naming
 * both files: a server creates objects by class name, and "the last one loaded wins" would
 * silently serve the wrong class.
 */
export async function loadAgentsFromDir(dir: string): Promise<Function[]> {
  const found = new Set<Function>();
  const { resolve } = await import("node:path");
  for (const file of await listFiles(resolve(dir))) {
    try {
      for (const c of await importClasses(file)) found.add(c);
    } catch (e) {
      // consola only when needed: the package root must stay light to import.
      const { consola } = await import("consola");
      consola.warn(`agent dir: skipped ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  classTable(found);
  return [...found];
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const [{ readdir }, { join }] = await Promise.all([import("node:fs/promises"), import("node:path")]);
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "node_modules") out.push(...(await listFiles(p)));
    } else if (e.isFile() && LOADABLE.test(e.name) && !SKIPPED.test(e.name)) {
      out.push(p);
    }
  }
  return out;
}
