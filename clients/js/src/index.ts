// @rampartsec/pin for Node.js: the core (strict JSON, pins, policies,
// verification, reports, signed bundles) and the Node integration (pinned
// https.Agent and tls.connect, RFC 7469 report delivery, the bundle updater).
// React Native: import "@rampartsec/pin/react-native", which uses the core only.
export * from "./core/index.js";
export * from "./node/index.js";
