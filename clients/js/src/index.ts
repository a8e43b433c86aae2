// @rampartsec/pin: Rampart's pinning semantics for JavaScript. The core
// (strict JSON, pins and policies, signed bundles) imports nothing from
// Node.js, so that it runs on Hermes (React Native) too.
export * from "./core/json.js";
export * from "./core/policy.js";
export * from "./core/bundle.js";
