// Everything a Node.js client needs from one configuration file (the one
// `rampart pin export --format rampart-client` writes): a verifier with the
// embedded policy, RFC 7469 report delivery, and the bundle updater.

import { readFileSync } from "node:fs";
import type https from "node:https";
import { parseClientConfig, type ClientConfig } from "../core/config.js";
import type { ReportQueue, ReportSender } from "../core/report.js";
import { nodeReportQueue } from "./report.js";
import { BundleUpdater } from "./updater.js";
import { PinVerifier, type Logger } from "./verifier.js";

/** Reads and checks a rampart-client configuration file. */
export function loadClientConfig(file: string): ClientConfig {
  const text = readFileSync(file, "utf8");
  if (text.length > 2 << 20) throw new Error(`rampart config: ${file} is larger than 2 MiB`);
  return parseClientConfig(text);
}

export interface PinningOptions {
  /** The bundle cache file; empty for none. */
  cacheFile?: string;
  /** Options of every pinned connection (ca, lookup, keepAlive...). */
  agentOptions?: https.AgentOptions;
  /** Posts reports; default https.request, not pinned. */
  send?: ReportSender;
  logger?: Logger | null;
  now?: () => number;
  interval?: number;
  maxBackoff?: number;
}

export interface Pinning {
  readonly verifier: PinVerifier;
  readonly reporter: ReportQueue;
  /** null when the configuration names no bundle URL. */
  readonly updater: BundleUpdater | null;
}

/** A verifier, a reporter and (when the configuration has a bundle URL) an updater; call updater.run() to poll. */
export function createPinning(config: ClientConfig, o: PinningOptions = {}): Pinning {
  const reporter = nodeReportQueue({ send: o.send, now: o.now, onError: o.logger === null ? undefined : (uri, host, err) => (o.logger ?? console).warn("pin/report: report not delivered", { uri, host, err: (err as Error).message }) });
  const verifier = new PinVerifier({ policy: config.policy, reporter, logger: o.logger, now: o.now, agentOptions: o.agentOptions });
  let updater: BundleUpdater | null = null;
  if (config.bundleURL && config.bundleKeys) {
    updater = new BundleUpdater({
      url: config.bundleURL,
      name: config.bundleName,
      keys: config.bundleKeys,
      embedded: config.policy,
      verifier,
      minVersion: config.minVersion,
      cacheFile: o.cacheFile,
      agentOptions: o.agentOptions,
      logger: o.logger,
      now: o.now,
      interval: o.interval,
      maxBackoff: o.maxBackoff,
    });
  }
  return { verifier, reporter, updater };
}
