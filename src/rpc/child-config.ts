/** What a parent tells a child server at spawn (JSON on its command line). */
export interface ChildConfig {
  /** Server id the parent gave the child. */
  id: string;
  /** Token of the child's loopback listener, if it is ever asked to open one. */
  key: string;
  /** Modules to import before serving (the module defining the class). */
  modules?: string[];
  capacity: number;
  maxQueue: number;
  maxPoolSize: number;
  maxExpireTime: number;
  maxTimeoutSeconds: number;
  maxMessageBytes?: number;
  /** The parent's model configs, inherited by the child. */
  modelConfigs?: unknown;
}
