// The bundle updater's state machine (pin/bundle/updater.go), without I/O:
// the rollback floor, the bundle in effect, the effective policy (embedded
// rules replaced by the bundle's rules of the same domain, plus its other
// rules: a bundle never removes an embedded rule), the expiry fallback, and
// the checks that make the control plane URL pinned by the embedded policy.
// The Node and React Native adapters drive it with their fetch and storage.

import { BundleError, checkBundleName, sameContent, verifyBundle, type Bundle, type Keys } from "./bundle.js";
import { domainInput, expired, newPolicy, PolicyError, type DomainInput, type Policy } from "./policy.js";
import { parseURL, URLError } from "./url.js";

export type Source = "embedded" | "cache" | "network" | "push";

export interface UpdaterState {
  /** The version in effect; 0 when the embedded policy applies alone. */
  version: number;
  source: Source;
  kid: string;
  /** ms; 0 when no bundle is in effect. */
  expiresAt: number;
  lastAttempt: number;
  lastSuccess: number;
  lastError: string;
  cacheError: string;
  consecutiveFailures: number;
  fetches: number;
  notModified: number;
  updates: number;
  rejected: number;
}

export interface BundleStateOptions {
  name: string;
  keys: Keys;
  embedded: Policy;
  minVersion?: number;
  /** Receives every change of the effective policy. */
  onPolicy: (p: Policy) => void;
  now?: () => number;
}

/** Checks the control plane URL: https, and its host pinned in enforce mode by the embedded policy (not expired at now, when given). */
export function checkControlPlane(embedded: Policy, url: string, now?: number): void {
  let u;
  try {
    u = parseURL(url);
  } catch (e) {
    if (e instanceof URLError) throw new BundleError("control-plane-not-pinned", e.message);
    throw e;
  }
  if (u.scheme !== "https" || u.hasUserinfo) throw new BundleError("control-plane-not-pinned", `${url.replace(/\/\/[^@/]*@/, "//")} is not an https URL without credentials`);
  const d = embedded.match(u.hostname);
  if (!d) throw new BundleError("control-plane-not-pinned", `no rule for ${u.hostname}`);
  if (d.mode !== "enforce") throw new BundleError("control-plane-not-pinned", `the rule for ${u.hostname} is ${d.mode}`);
  if (now !== undefined && expired(d, now)) {
    throw new BundleError(
      "control-plane-not-pinned",
      `the embedded rule for ${u.hostname} expired after ${d.expires}, so the connection would get CA validation only; not fetching (ship the client with a renewed rule)`,
    );
  }
}

/** The effective policy of embedded + bundle policy b. Throws PolicyError. */
export function effectivePolicy(embedded: Policy, b: Policy): Policy {
  const byName = new Map(b.domains.map((d, i) => [d.name, i]));
  const used = new Set<number>();
  const out: DomainInput[] = [];
  for (const d of embedded.domains) {
    const i = byName.get(d.name);
    if (i !== undefined) {
      out.push(domainInput(b.domains[i]!));
      used.add(i);
    } else out.push(domainInput(d));
  }
  b.domains.forEach((d, i) => {
    if (!used.has(i)) out.push(domainInput(d));
  });
  const uri = b.reportURI || embedded.reportURI;
  const logs = b.ctLogs.length ? [...b.ctLogs] : [...embedded.ctLogs];
  return newPolicy(uri, out, logs);
}

/** The updater's state, shared by the Node and React Native adapters. */
export class BundleState {
  private active: Bundle | null = null;
  private floor: Bundle | null = null;
  private source: Source = "embedded";
  /** ETag of the response that delivered the floor. */
  etag = "";
  private policy: Policy;
  readonly st: Omit<UpdaterState, "version" | "source" | "kid" | "expiresAt"> = {
    lastAttempt: 0,
    lastSuccess: 0,
    lastError: "",
    cacheError: "",
    consecutiveFailures: 0,
    fetches: 0,
    notModified: 0,
    updates: 0,
    rejected: 0,
  };

  constructor(readonly opts: BundleStateOptions) {
    const e = checkBundleName(opts.name);
    if (e) throw new Error(`bundle: updater name: ${e}`);
    if ((opts.minVersion ?? 0) < 0 || !Number.isSafeInteger(opts.minVersion ?? 0)) throw new Error(`bundle: minVersion ${opts.minVersion}: want an integer, 0 or more`);
    if (opts.keys.size === 0) throw new Error("bundle: no trusted keys");
    this.policy = opts.embedded;
  }

  now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  get minVersion(): number {
    return this.opts.minVersion ?? 0;
  }

  /** The effective policy now in force. */
  get current(): Policy {
    return this.policy;
  }

  get activeBundle(): Bundle | null {
    return this.active;
  }

  /** The highest version accepted (the rollback floor), expired or not. */
  get floorBundle(): Bundle | null {
    return this.floor;
  }

  state(): UpdaterState {
    const b = this.active;
    return { ...this.st, version: b?.version ?? 0, source: this.source, kid: b?.kid ?? "", expiresAt: b ? b.exp * 1000 : 0 };
  }

  private setPolicy(p: Policy): void {
    this.policy = p;
    this.opts.onPolicy(p);
  }

  /**
   * Applies the cached bundle at start-up (text: the cache file's contents,
   * null when there is none). A cached bundle that is authentic but expired
   * or not yet valid is not applied but sets the floor. Returns the error
   * that made the cache give no floor (also in state().cacheError), if any.
   */
  loadCache(text: string | null): BundleError | Error | null {
    if (text === null) return null;
    const now = this.now();
    let b: Bundle;
    try {
      b = verifyBundle(text.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, ""), this.opts.keys, now);
    } catch (e) {
      if (e instanceof BundleError && e.bundle && e.bundle.name === this.opts.name && (e.code === "expired" || e.code === "not-yet-valid")) {
        const fb = e.bundle;
        if (fb.version < this.minVersion) {
          return this.badCache(new BundleError("rollback", `the cached version ${fb.version} is below MinVersion ${this.minVersion}`));
        }
        if (!this.floor || fb.version > this.floor.version) this.floor = fb;
        return null;
      }
      return this.badCache(e as Error);
    }
    try {
      this.accept(b, "cache", "");
    } catch (e) {
      return this.badCache(e as Error);
    }
    return null;
  }

  private badCache(err: Error): Error {
    this.st.cacheError = err.message;
    return err;
  }

  /**
   * Verifies jws at now and applies it: returns true when it took effect,
   * false when it is the bundle in effect again (nothing changes). Throws
   * BundleError for a refusal, in the order of the vectors README.
   */
  offer(jws: string, source: Source, etag: string): boolean {
    const now = this.now();
    this.expire(now);
    const b = verifyBundle(jws, this.opts.keys, now);
    return this.accept(b, source, etag);
  }

  /** Applies a verified bundle unless the name or the floor refuses it. */
  accept(b: Bundle, source: Source, etag: string): boolean {
    if (b.name !== this.opts.name) throw new BundleError("wrong-name", `got a bundle for ${JSON.stringify(b.name)}, want ${JSON.stringify(this.opts.name)}`, b);
    if (b.version < this.minVersion) throw new BundleError("rollback", `version ${b.version} is below version ${this.minVersion}, the lowest this client accepts (MinVersion)`, b);
    const floor = this.floor;
    if (floor) {
      if (b.version < floor.version) throw new BundleError("rollback", `version ${b.version} is older than version ${floor.version}, already accepted`, b);
      if (b.version === floor.version) {
        if (!sameContent(b, floor)) {
          throw new BundleError("rollback", `version ${b.version} differs from the version ${floor.version} already accepted (equivocation: the signer issued two bundles under one version)`, b);
        }
        if (this.active) {
          if (etag) this.etag = etag;
          return false;
        }
        // The floor came from a cached bundle not valid then, and valid now.
      }
    }
    let eff: Policy;
    try {
      eff = effectivePolicy(this.opts.embedded, b.policy);
    } catch (e) {
      if (e instanceof PolicyError) throw new BundleError("malformed", `the bundle's policy does not combine with the embedded policy: ${e.message}`, b);
      throw e;
    }
    this.active = b;
    this.source = source;
    this.floor = b;
    this.etag = etag;
    this.st.cacheError = "";
    if (source !== "cache") this.st.updates++;
    this.setPolicy(eff);
    return true;
  }

  /** Falls back to the embedded policy when the bundle in effect has expired at now; true when it did. */
  expire(now = this.now()): boolean {
    const b = this.active;
    if (!b || now < b.exp * 1000) return false;
    this.active = null;
    this.source = "embedded";
    this.etag = "";
    this.setPolicy(this.opts.embedded);
    return true;
  }
}
