// Preloaded by bunfig.toml: Bun 1.4.5 ignores bunfig's `[test] timeout`, so set it here.
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(30_000);
