/**
 * What a server says about itself and its objects: the `list` answer (one `AgentInfo` per
 * object) and the CPU share of `info`, measured since the previous ask.
 */
import type { AgentInfo, ServerInfo } from "../core/protocol.ts";
import type { Capacity } from "./capacity.ts";

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

/** What `serverInfoOf` reads. */
export interface InfoSources {
  id: string;
  cpu: CpuMeter;
  /** Objects held. */
  size: number;
  capacity: Capacity;
  /** Results held by the pool. */
  results: number;
  /** Fields an observer adds (call counts and rates, restarts). */
  extra?: Partial<ServerInfo> | undefined;
}

/** The `info` answer: computed at once, cpu from usage since the previous ask. */
export function serverInfoOf(s: InfoSources): ServerInfo {
  return {
    pid: process.pid,
    id: s.id,
    cpu: s.cpu.sample(),
    mem: Math.round((process.memoryUsage.rss() / 1048576) * 10) / 10,
    size: s.size,
    capacity: s.capacity.limit,
    pending: s.capacity.running + s.capacity.queued,
    results: s.results,
    ...s.extra,
  };
}
