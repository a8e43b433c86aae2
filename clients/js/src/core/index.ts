// The platform-independent core: it imports nothing from Node.js, so that it
// runs on Hermes (React Native) as well.

export * from "./bytes.js";
export * from "./json.js";
export * from "./pin.js";
export * from "./policy.js";
export * from "./verify.js";
export * from "./report.js";
export * from "./bundle.js";
export * from "./updater.js";
export * from "./config.js";
export { parseCertificate } from "./der.js";
export { parseIP, formatIP, isLoopbackHost } from "./ip.js";
