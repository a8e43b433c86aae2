// React Native: the core's policy and bundle logic, and the options of
// react-native-ssl-public-key-pinning's initializeSslPinning (TrustKit on
// iOS, OkHttp's CertificatePinner on Android), exactly as
// `rampart pin export --format react-native` writes them
// (pin/export/clients.go, reactNative). This module imports nothing from
// Node.js nor from react-native: the library's functions are injected.

import { BundleError, type Keys } from "../core/bundle.js";
import type { Domain, Policy } from "../core/policy.js";
import { BundleState, checkControlPlane, type UpdaterState } from "../core/updater.js";
import { parseURL } from "../core/url.js";

/** One domain of initializeSslPinning's argument. */
export interface SslPinningDomain {
  includeSubdomains: boolean;
  /** Standard base64 SHA-256 SPKI hashes (without the sha256/ prefix). */
  publicKeyHashes: string[];
  /** "YYYY-MM-DD": the day after the policy's inclusive date (TrustKit stops pinning at 00:00 UTC of this date). */
  expirationDate?: string;
}

export type SslPinningOptions = Record<string, SslPinningDomain>;

/** The export cannot express the policy; the message says why and what to change. */
export class ExportError extends Error {
  constructor(domain: string, message: string) {
    super(`pin export (react-native)${domain ? `: domain ${domain}` : ""}: ${message}`);
    this.name = "ExportError";
  }
}

function enforcingParent(policy: Policy, name: string): Domain | null {
  for (let i = name.indexOf("."); i >= 0; i = name.indexOf(".")) {
    name = name.slice(i + 1);
    const d = policy.domains.find((x) => x.name === name && x.includeSubdomains);
    if (d) return d.mode === "enforce" ? d : null; // the nearest parent decides
  }
  return null;
}

const isIP = (name: string) => name.includes(":") || /^[0-9.]+$/.test(name);

/**
 * The argument of initializeSslPinning for a policy, as Rampart's Go export
 * writes it. Report-only rules cannot be expressed there: they are left out
 * (a warning), and refused when an enforced parent rule with
 * includeSubdomains would enforce its pins on them. Certificate pins, a rule
 * with fewer than two pins (TrustKit requires two), an IP address rule and
 * includeSubdomains on a single-label name are refused (ExportError).
 */
export function toSslPinningOptions(policy: Policy, onWarning: (msg: string) => void = () => undefined): SslPinningOptions {
  const rules: Domain[] = [];
  for (const d of policy.domains) {
    if (d.mode === "enforce") {
      rules.push(d);
      continue;
    }
    const parent = enforcingParent(policy, d.name);
    if (parent) {
      throw new ExportError(d.name, `the rule is report-only, but react-native cannot exempt it from rule ${parent.name}, which includes subdomains and would enforce its pins here; make this rule enforce, or stop including subdomains in ${parent.name}`);
    }
    onWarning(`domain ${d.name} is report-only, which react-native cannot express: it is left out and not pinned there`);
  }
  for (const d of rules) {
    for (const parent of rules) {
      if (parent.includeSubdomains && parent.name !== d.name && d.name.endsWith("." + parent.name)) {
        onWarning(`domain ${d.name}: the library's Android side (OkHttp) also accepts the pins of ${parent.name} for it (it checks every matching pattern), where the policy uses only the most specific rule`);
      }
    }
  }
  for (const d of rules) {
    if (d.expires) onWarning(`domain ${d.name}: the library's Android side may ignore expirationDate (releases that do not read it enforce the pins after ${d.expires}); check the version you ship`);
  }
  const out: SslPinningOptions = {};
  for (const d of rules) {
    const cert = d.pins.find((p) => p.kind !== "spki");
    if (cert) throw new ExportError(d.name, `pin ${cert} is a certificate fingerprint, which react-native cannot express; pin the certificate's public key instead (rampart pin hash gives its sha256/ pin)`);
    if (d.pins.length < 2) throw new ExportError(d.name, "react-native-ssl-public-key-pinning needs at least two pins per domain on iOS; add a backup pin");
    if (isIP(d.name)) throw new ExportError(d.name, "react-native-ssl-public-key-pinning uses TrustKit on iOS, which pins host names only, not IP addresses");
    if (d.includeSubdomains && !d.name.includes(".")) throw new ExportError(d.name, "react-native-ssl-public-key-pinning uses TrustKit on iOS, which refuses include_subdomains on a public suffix");
    const e: SslPinningDomain = { includeSubdomains: d.includeSubdomains, publicKeyHashes: d.pins.map((p) => p.base64()) };
    if (d.expiresAt !== null) e.expirationDate = new Date(d.expiresAt).toISOString().slice(0, 10);
    out[d.name] = e;
  }
  return out;
}

/** The functions of react-native-ssl-public-key-pinning that the adapter calls. */
export interface SslPinningLibrary {
  initializeSslPinning(options: SslPinningOptions): Promise<void>;
}

/** AsyncStorage's shape: where the last accepted bundle is kept (the rollback floor across restarts). */
export interface BundleStorage {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
}

/** The part of fetch the adapter uses (the app's fetch, pinned by the native layer). */
export type FetchLike = (url: string, init: { method: "GET"; headers: Record<string, string> }) => Promise<{ status: number; text(): Promise<string>; headers: { get(name: string): string | null } }>;

export interface ReactNativePinningOptions {
  library: SslPinningLibrary;
  /** The policy shipped with the app. */
  embedded: Policy;
  keys: Keys;
  name: string;
  minVersion?: number;
  /** The bundle URL (for update()); its host must be enforced by the embedded policy. */
  url?: string;
  storage?: BundleStorage;
  storageKey?: string;
  now?: () => number;
  onWarning?: (msg: string) => void;
}

/**
 * Keeps react-native-ssl-public-key-pinning's pins current from verified
 * bundles: start() initialises the pins from the cached bundle (or the
 * embedded policy) before any request; applyBundle() and update() verify a
 * bundle with the core and re-initialise the pins. The control plane's host
 * keeps its embedded rule whatever a bundle says, as in the Go updater.
 *
 * Caveat: re-initialising changes the pins for new connections only. The
 * native layers' existing connections (OkHttp's pool, NSURLSession's) and
 * their TLS session caches are not re-evaluated: see the README.
 */
export class ReactNativePinning {
  readonly core: BundleState;
  private started = false;

  constructor(readonly opts: ReactNativePinningOptions) {
    if (opts.url) checkControlPlane(opts.embedded, opts.url);
    this.core = new BundleState({ name: opts.name, keys: opts.keys, embedded: opts.embedded, minVersion: opts.minVersion, now: opts.now, onPolicy: () => undefined });
  }

  get policy(): Policy {
    return this.core.current;
  }

  state(): UpdaterState {
    return this.core.state();
  }

  private key(): string {
    return this.opts.storageKey ?? `rampart-pin-bundle:${this.opts.name}`;
  }

  /** The options for the effective policy, with the control plane host on its embedded rule. */
  pinningOptions(): SslPinningOptions {
    const opts = toSslPinningOptions(this.core.current, this.opts.onWarning);
    if (this.opts.url) {
      const host = parseURL(this.opts.url).hostname;
      const e = this.opts.embedded.match(host)!;
      const cp = toSslPinningOptions(this.opts.embedded)[e.name];
      if (cp) opts[e.name] = cp;
    }
    return opts;
  }

  /** Loads the cached bundle (if any) and initialises the pins. Call before any request. */
  async start(): Promise<void> {
    if (this.opts.storage) {
      const text = await this.opts.storage.getItem(this.key());
      this.core.loadCache(text);
    }
    this.started = true;
    await this.opts.library.initializeSslPinning(this.pinningOptions());
  }

  /** Verifies jws (every check of the Go updater) and, when it is new, stores it and re-initialises the pins. Returns whether it took effect. Throws BundleError. */
  async applyBundle(jws: string, etag = ""): Promise<boolean> {
    if (!this.started) await this.start();
    let applied: boolean;
    try {
      applied = this.core.offer(jws.trim(), etag ? "network" : "push", etag);
    } catch (e) {
      this.core.st.rejected++;
      throw e;
    }
    if (!applied) return false;
    if (this.opts.storage) await this.opts.storage.setItem(this.key(), this.core.activeBundle!.jws);
    await this.opts.library.initializeSslPinning(this.pinningOptions());
    return true;
  }

  /** Fetches the bundle with the app's fetch (the control plane is pinned by the native layer with its embedded rule) and applies it. */
  async update(fetchImpl: FetchLike): Promise<boolean> {
    if (!this.opts.url) throw new Error("bundle: update needs the bundle url");
    if (!this.started) await this.start();
    const st = this.core.st;
    const now = this.core.now();
    if (this.core.expire(now)) await this.opts.library.initializeSslPinning(this.pinningOptions());
    st.lastAttempt = now;
    st.fetches++;
    try {
      checkControlPlane(this.opts.embedded, this.opts.url, now);
      const headers: Record<string, string> = { Accept: "application/jose" };
      if (this.core.activeBundle && this.core.etag) headers["If-None-Match"] = this.core.etag;
      const res = await fetchImpl(this.opts.url, { method: "GET", headers });
      if (res.status === 304) {
        st.notModified++;
        st.lastSuccess = now;
        st.consecutiveFailures = 0;
        st.lastError = "";
        return false;
      }
      if (res.status !== 200) throw new Error(`bundle: fetching ${this.opts.url}: unexpected status ${res.status}`);
      const applied = await this.applyBundle(await res.text(), res.headers.get("etag") ?? "");
      st.lastSuccess = now;
      st.consecutiveFailures = 0;
      st.lastError = "";
      return applied;
    } catch (e) {
      st.consecutiveFailures++;
      st.lastError = (e as Error).message;
      throw e;
    }
  }
}

export { BundleError };
export * from "../core/index.js";
