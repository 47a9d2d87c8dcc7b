export { Msg, type MsgInit, type Role } from "./message.ts";
export { Memory } from "./memory.ts";
export { AgentBase, type AgentOptions } from "./agent.ts";
export { dist, asyncFunc, syncFunc } from "./rpc/decorators.ts";
export { Distributable, type DistConf } from "./rpc/distributable.ts";
export { ServerGroup, type ServerGroupOptions, type GroupServer, type GroupServerStatus, type PlacementStrategy } from "./rpc/placement.ts";
export { AsyncResult } from "./rpc/async-result.ts";
export { withOptions, type Remote, type RemoteHandle, type Pipelined, type CallOptions } from "./rpc/proxy.ts";
export { RetryFixedTimes, RetryExponential, type RetryStrategy, type RetryFixedTimesOptions, type RetryExponentialOptions } from "./rpc/retry.ts";
export {
  errors,
  AgentServerError,
  AgentServerNotAliveError,
  AgentCreationError,
  AgentCallError,
  NotFoundError,
  UnimplementedError,
  ResourceExhaustedError,
  DeadlineExceededError,
  UnauthenticatedError,
  CancelledError,
  CodecError,
  PermissionDeniedError,
  type ErrorCode,
  type RemoteErrorInfo,
} from "./rpc/errors.ts";
export { DEFAULT_LIMITS, type Limits } from "./rpc/limits.ts";
export { configureLimits } from "./rpc/refs.ts";
export type { AgentInfo, ServerInfo, ClassInfo } from "./rpc/protocol.ts";
export { currentCall, type CallContext } from "./server/call-context.ts";
export { init, type InitOptions } from "./models/init.ts";
export type { ModelConfig } from "./models/store.ts";
export { DialogAgent, type DialogAgentOptions } from "./models/dialog-agent.ts";
export { applyModelConfigs, loadModelConfigs, type ApplyModelConfigsOptions } from "./models/init.ts";
export { loadModel, registerModelType, modelTypes, type ModelFactory } from "./models/load.ts";
export { ChatModel } from "./models/chat-model.ts";
export { OpenAIChatModel } from "./models/openai-chat.ts";
export { PostAPIChatModel } from "./models/post-api-chat.ts";
export { ModelError, ModelConfigError, ModelHttpError } from "./models/errors.ts";
export { redact, redactConfig } from "./models/redact.ts";
export { formatMessages } from "./models/format.ts";
export type { ChatMessage, ModelResponse, ModelCallOptions, ModelInfo } from "./models/types.ts";
export { RpcAgentServerLauncher, type LauncherOptions } from "./server/launcher.ts";
export { loadCustomClassFromFile, loadAgentsFromDir } from "./server/class-loader.ts";
export { RpcClient, type RpcClientOptions } from "./rpc/rpc-client.ts";
export { connect, type ConnectTarget } from "./rpc/connect.ts";
export type { ClientTlsOption, PemSource } from "./rpc/tls.ts";
