// The client configuration that `rampart pin export --format rampart-client`
// writes (pin/export/client.go):
//
//   {"format": "rampart-client/1", "comment": "...", "policy": {...},
//    "bundle_keys": {JWKS}, "bundle_url": "https://...",
//    "bundle_name": "mobile", "min_version": N}

import { Keys, checkBundleName } from "./bundle.js";
import { JsonNumber, parseJSON, type JsonValue } from "./json.js";
import { parsePolicy, PolicyError, type Policy } from "./policy.js";
import { checkControlPlane } from "./updater.js";

export interface ClientConfig {
  /** The embedded policy. */
  policy: Policy;
  /** The trusted bundle signing keys; null when the file has none. */
  bundleKeys: Keys | null;
  bundleURL: string;
  bundleName: string;
  minVersion: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(`rampart config: ${message}`);
    this.name = "ConfigError";
  }
}

/** The format member of the files this client reads. */
export const CONFIG_FORMAT = "rampart-client/1";

const MEMBERS = ["format", "comment", "policy", "bundle_keys", "bundle_url", "bundle_name", "min_version"];

/**
 * Reads the export file strictly: format must be "rampart-client/1";
 * other members than those of the file are refused; policy is required;
 * bundle_keys is optional (a client that only applies bundles handed to it
 * needs no URL); bundle_url needs bundle_keys and bundle_name, and must be
 * on a host the policy itself enforces; bundle_name and min_version need
 * bundle_url; min_version defaults to 0.
 */
export function parseClientConfig(text: string | JsonValue): ClientConfig {
  let v: JsonValue;
  try {
    v = typeof text === "string" ? parseJSON(text) : text;
  } catch (e) {
    throw new ConfigError(`not valid JSON: ${(e as Error).message}`);
  }
  if (!(v instanceof Map)) throw new ConfigError("want a JSON object");
  for (const k of v.keys()) if (!MEMBERS.includes(k)) throw new ConfigError(`member ${JSON.stringify(k.slice(0, 64))} is not a configuration member (want ${MEMBERS.join(", ")})`);
  const format = v.get("format");
  if (format !== CONFIG_FORMAT) throw new ConfigError(`format: want ${JSON.stringify(CONFIG_FORMAT)} (the file rampart pin export --format rampart-client writes)`);
  const comment = v.get("comment");
  if (comment !== undefined && typeof comment !== "string") throw new ConfigError("comment: want a string");
  const pv = v.get("policy");
  if (!(pv instanceof Map)) throw new ConfigError("policy: want the policy object");
  let policy: Policy;
  try {
    policy = parsePolicy(pv);
  } catch (e) {
    if (e instanceof PolicyError) throw new ConfigError(`policy: ${e.message}`);
    throw e;
  }
  let keys: Keys | null = null;
  if (v.has("bundle_keys")) {
    try {
      keys = Keys.parse(v.get("bundle_keys")!);
    } catch (e) {
      throw new ConfigError(`bundle_keys: ${(e as Error).message}`);
    }
  }
  const url = v.get("bundle_url");
  const name = v.get("bundle_name");
  const mv = v.get("min_version");
  if (url === undefined) {
    if (name !== undefined || mv !== undefined) throw new ConfigError("bundle_name and min_version need bundle_url");
    return { policy, bundleKeys: keys, bundleURL: "", bundleName: "", minVersion: 0 };
  }
  if (typeof url !== "string") throw new ConfigError("bundle_url: want a string");
  if (!keys) throw new ConfigError("bundle_url needs bundle_keys, the keys that verify its bundles");
  if (typeof name !== "string") throw new ConfigError("bundle_name: want a string (bundle_url needs it)");
  const ne = checkBundleName(name);
  if (ne) throw new ConfigError(`bundle_name: ${ne}`);
  let minVersion = 0;
  if (mv !== undefined) {
    const n = mv instanceof JsonNumber ? mv.bigint() : null;
    if (n === null || n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) throw new ConfigError("min_version: want an integer, 0 or more");
    minVersion = Number(n);
  }
  try {
    checkControlPlane(policy, url);
  } catch (e) {
    throw new ConfigError(`bundle_url: ${(e as Error).message}`);
  }
  return { policy, bundleKeys: keys, bundleURL: url, bundleName: name, minVersion };
}
