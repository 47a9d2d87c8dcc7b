/**
 * `isolate: true`: what the launcher gives its servicer so that each agent runs in a child
 * server of its own (server/isolation.ts) — the children's limits, the restart budget, and the
 * event log and restart counter that crashes and restarts go to.
 */
import type { IsolateOptions } from "../isolation.ts";
import type { CallStats } from "../metrics.ts";
import type { ResolvedLauncherOptions } from "./options.ts";

/** The isolation options of a server launched with `o`. */
export async function isolateOptions(o: ResolvedLauncherOptions, serverId: string, stats: CallStats, selfTokens: () => Record<string, string> | undefined): Promise<IsolateOptions> {
  const [{ supervisionLog }, { currentModelConfigs }] = await Promise.all([import("../event-log.ts"), import("../../models/store.ts")]);
  return {
    ...(o.restart === undefined ? {} : { restart: o.restart }),
    // Read at each creation: model configs a peer set since launch reach the agents created after.
    child: () => {
      const models = currentModelConfigs();
      const tokens = selfTokens();
      return {
        capacity: o.capacity,
        maxQueue: o.maxQueue,
        maxPoolSize: o.maxPoolSize,
        maxExpireTime: o.maxExpireTime,
        maxTimeoutSeconds: o.maxTimeoutSeconds,
        maxMessageBytes: o.maxMessageBytes,
        ...(o.streamWindow === undefined ? {} : { streamWindow: o.streamWindow }),
        ...(models === undefined ? {} : { modelConfigs: models }),
        ...(tokens === undefined ? {} : { tokens }),
      };
    },
    events: supervisionLog(serverId, (cls) => stats.restarted(cls)),
  };
}
