// Preloaded by bunfig.toml: Bun 1.4.5 ignores bunfig's `[test] timeout`, so set it here. It also
// applies this default to the first test file only: `bun run test` passes `--timeout` too.
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(30_000);
