/**
 * lowcomms: the Linux kernel DLM's node-to-node communication layer (lowcomms +
 * midcomms 3.2) for Node.js. See README.md for the guide.
 */
export {
  Lowcomms,
  type LowcommsOptions,
  type LowcommsEvents,
  type LowcommsStats,
  type NodeStats,
  type PathStats,
  type OutgoingMessage,
  type FlushPolicy,
  type SctpOptions,
  type TransportName,
  type CloseOptions,
  type CloseResult,
} from './lowcomms';
export { MessageBatch, type DlmMessage } from './message';
export { sctpAvailable } from './native';
export { OPTION_DEFAULTS } from './defaults';
export { NodeTable, normalizeAddress, MAX_ADDRS_PER_NODE, type NodeConfig, type LoadOptions } from './nodetable';
export {
  formatMetrics,
  registerMetrics,
  METRICS_CONTENT_TYPE,
  PATH_STATES,
  type MetricsOptions,
  type PromClientLike,
  type PromRegistryLike,
} from './metrics';
export { parseCorosyncConf, parseCorosyncNodelist } from './corosync';
export { AUTH_KEY_BYTES, AUTH_SCRYPT, deriveAuthKey, type AuthOptions, type RecordProtection } from './authkey';
export * from './errors';
export * from './dlm';
export {
  CorosyncMembership,
  corosyncAvailable,
  corosyncNodeTable,
  readCorosyncCluster,
  type CorosyncClusterInfo,
  type CorosyncClusterNode,
  type CpgMember,
  type CpgReason,
  type MembershipEvents,
  type MembershipOptions,
} from './membership';
