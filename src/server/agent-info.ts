/**
 * What a server says about itself and its objects: the `list` answer (one `AgentInfo` per
 * object) and the CPU share of `info`, measured since the previous ask.
 */
import type { AgentInfo } from "../core/protocol.ts";

/** `AgentInfo` of every held object: id, class, and the agent fields that are strings. */
export function describeAgents(objects: Iterable<[string, { obj: object; cls: string }]>): AgentInfo[] {
  const out: AgentInfo[] = [];
  for (const [id, h] of objects) {
    const o = h.obj as { name?: unknown; sysPrompt?: unknown; modelConfigName?: unknown; model?: { modelType?: string } };
    const e: AgentInfo = { id, cls: h.cls };
    if (typeof o.name === "string") e.name = o.name;
    if (typeof o.sysPrompt === "string") e.sysPrompt = o.sysPrompt;
    if (typeof o.modelConfigName === "string") {
      e.model = { configName: o.modelConfigName };
      if (o.model?.modelType) e.model.modelType = o.model.modelType;
    }
    out.push(e);
  }
  return out;
}

/** CPU use of this process in percent of one core, since the previous sample (or its start). */
export class CpuMeter {
  #at = performance.now();
  #usage = process.cpuUsage();

  /** Percent since the previous call, to one decimal. */
  sample(): number {
    const now = performance.now();
    const usage = process.cpuUsage();
    const spent = usage.user + usage.system - (this.#usage.user + this.#usage.system);
    const wall = (now - this.#at) * 1000;
    this.#at = now;
    this.#usage = usage;
    return wall > 0 ? Math.round((spent / wall) * 1000) / 10 : 0;
  }
}
