/**
 * Build the single-file `as-server` binary, then prove it runs.
 *
 *   bun scripts/build.ts [--outfile dist/as-server]
 *
 * Flags that matter (bun-stack-notes §4):
 * - `--bytecode --format=esm`, always together: bytecode defaults to CJS, which fails on
 *   `import.meta`, yet the build still exits 0 and writes a binary that cannot start. So the
 *   build's output is also scanned for "Failed to generate bytecode", and the binary is
 *   smoke-tested with `--version` from an empty directory.
 * - `--compile-autoload-package-json`: lets `--agent-dir` code resolve packages from its own
 *   node_modules (without it the binary does not read package.json files at run time).
 * - `--sourcemap`: readable stack traces from the minified bundle (embedded in the binary).
 */
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

const root = resolve(import.meta.dir, "..");

/** Parse `--outfile X` / `--outfile=X`; default dist/as-server. */
function outfileArg(argv: readonly string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--outfile") return resolve(argv[i + 1] ?? fail("--outfile needs a path"));
    if (a.startsWith("--outfile=")) return resolve(a.slice("--outfile=".length));
    fail(`unknown argument ${a} (usage: bun scripts/build.ts [--outfile PATH])`);
  }
  return join(root, "dist", "as-server");
}

function fail(msg: string): never {
  process.stderr.write(`build: ${msg}\n`);
  process.exit(1);
}

/** Run a command, echoing its output, and return its exit code and combined output. */
async function run(cmd: string[], cwd: string): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  process.stdout.write(out);
  process.stderr.write(err);
  return { code, out: out + err };
}

const outfile = outfileArg(process.argv.slice(2));
mkdirSync(dirname(outfile), { recursive: true });
rmSync(outfile, { force: true });

const started = performance.now();
// prettier-ignore
const build = await run([
  process.execPath, "build", "--compile", "--bytecode", "--format=esm", "--minify", "--sourcemap",
  "--compile-autoload-package-json", "bin/as-server.ts", "--outfile", outfile,
], root);
if (build.code !== 0) fail(`bun build exited with ${build.code}`);
if (/failed to generate bytecode|error:/i.test(build.out)) fail("bun build reported an error (see above) although it exited 0");
// The binary embeds its source map (stack traces name the .ts files without it); the copy
// bun also writes next to it is not needed to run or debug, so the output stays one file.
rmSync(`${outfile}.map`, { force: true });
const size = statSync(outfile, { throwIfNoEntry: false })?.size;
if (!size) fail(`bun build wrote no binary at ${outfile}`);

// Smoke test from an empty directory: no node_modules, no package.json to lean on.
const empty = mkdtempSync(join(tmpdir(), "as-server-smoke-"));
try {
  const smoke = await run([outfile, "--version"], empty);
  if (smoke.code !== 0 || smoke.out.trim() !== pkg.version) {
    fail(`the built binary does not run: \`${outfile} --version\` exited ${smoke.code} with ${JSON.stringify(smoke.out.trim())}`);
  }
} finally {
  rmSync(empty, { recursive: true, force: true });
}
const ms = Math.round(performance.now() - started);
console.log(`build: ${outfile} (${(size / 2 ** 20).toFixed(1)} MiB, v${pkg.version}) built and smoke-tested in ${ms} ms`);
