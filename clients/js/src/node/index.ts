// The Node.js integration.
export { PinVerifier, PinnedAgent, pinnedAgent, pinnedConnect, PinConfigError, PolicyChangedError, type Logger, type PinVerifierOptions, type PinnedOptions } from "./verifier.js";
export { trustAnchors, buildChains, TrustAnchors } from "./chain.js";
export { nodeReportSender, nodeReportQueue, type NodeSenderOptions } from "./report.js";
export { BundleUpdater, CacheWriteError, CacheRefusedError, readCache, writeCache, DEFAULT_INTERVAL, type BundleUpdaterOptions } from "./updater.js";
export { loadClientConfig, createPinning, type Pinning, type PinningOptions } from "./client.js";
export { nodeSignatureCheck } from "./crypto.js";
