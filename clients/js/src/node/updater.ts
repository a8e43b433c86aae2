// The bundle updater on Node.js (pin/bundle/updater.go): fetches the signed
// bundle over a connection pinned by the EMBEDDED policy alone, keeps the
// last accepted bundle in a cache file written atomically (temporary file,
// fsync, rename) that also holds the rollback floor across restarts, and
// pushes the effective policy into a PinVerifier.

import { randomBytes } from "node:crypto";
import { constants, promises as fsp } from "node:fs";
import https from "node:https";
import path from "node:path";
import { BundleError, MAX_SIZE, type Keys } from "../core/bundle.js";
import type { Policy } from "../core/policy.js";
import { BundleState, checkControlPlane, type Source, type UpdaterState } from "../core/updater.js";
import { PinVerifier, type Logger } from "./verifier.js";
import "./crypto.js"; // node:crypto verifies bundle signatures on Node

export const DEFAULT_INTERVAL = 15 * 60 * 1000;
const INITIAL_BACKOFF = 5000;
const FETCH_TIMEOUT = 30000;

export interface BundleUpdaterOptions {
  /** The https URL of the bundle; its host must be enforced by the embedded policy. */
  url: string;
  /** The bundle name expected in the payload. */
  name: string;
  keys: Keys;
  /** The policy shipped with the client: the floor, and the only pins of the control plane connection. */
  embedded: Policy;
  /** Receives the effective policy (setPolicy). Its policy is set to embedded at start. */
  verifier: PinVerifier;
  /** Where the last accepted bundle is kept (mode 0600). Empty: no cache, no floor across restarts. */
  cacheFile?: string;
  /** The lowest version accepted, shipped with the client. */
  minVersion?: number;
  /** Between successful polls (ms); default 15 minutes. */
  interval?: number;
  /** Cap of the wait after failures (ms); default interval. */
  maxBackoff?: number;
  /** The clock of bundle validity and pin-set expiry (ms). */
  now?: () => number;
  /** Told of updates, refusals and fallbacks (names, versions and key IDs only). Default console; null for none. */
  logger?: Logger | null;
  /** Options of the control plane connection: ca, lookup... It is pinned by `embedded` whatever these say. */
  agentOptions?: https.AgentOptions;
  /** For tests: waits ms or until the signal aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** A bundle was applied but could not be written to the cache file. */
export class CacheWriteError extends Error {
  constructor(cause: unknown) {
    super(`bundle: applied, but could not write the cache (the rollback floor will not survive a restart): ${(cause as Error).message}`);
    this.name = "CacheWriteError";
  }
}

/** A cache file refused before reading it (pin/bundle ErrCacheRefused). */
export class CacheRefusedError extends Error {
  constructor(file: string, why: string) {
    super(`bundle: cache file refused: ${file} ${why}`);
    this.name = "CacheRefusedError";
  }
}

const info = (l: Logger | null, m: string, a: Record<string, unknown>) => l?.info?.(m, a);

export class BundleUpdater {
  readonly core: BundleState;
  private readonly cpVerifier: PinVerifier;
  private loaded = false;
  private cacheDirty = false;
  private readonly logger: Logger | null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly opts: BundleUpdaterOptions) {
    const { url, name, keys, embedded, verifier } = opts;
    if (!url || !name || !keys || !embedded || !verifier) throw new Error("bundle: BundleUpdater needs url, name, keys, embedded and verifier");
    checkControlPlane(embedded, url);
    this.logger = opts.logger === undefined ? { warn: (m, a) => console.warn(m, a), error: (m, a) => console.error(m, a) } : opts.logger;
    this.core = new BundleState({ name, keys, embedded, minVersion: opts.minVersion, now: opts.now, onPolicy: (p) => verifier.setPolicy(p) });
    // The control plane is pinned by the embedded policy alone: its own
    // verifier, which no bundle ever changes.
    this.cpVerifier = new PinVerifier({ policy: embedded, now: opts.now, logger: this.logger, agentOptions: opts.agentOptions });
    if (verifier.policy !== embedded) verifier.setPolicy(embedded);
  }

  state(): UpdaterState {
    return this.core.state();
  }

  /** One operation at a time. */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.queue.then(f, f);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Applies the cache file, if any, before any network access. Never throws for a bad cache (see state().cacheError). */
  load(): Promise<void> {
    return this.serial(() => this.loadNow());
  }

  private async loadNow(): Promise<void> {
    this.loaded = true;
    const file = this.opts.cacheFile;
    if (!file) return;
    let text: string | null;
    try {
      text = await readCache(file);
    } catch (e) {
      this.core.st.cacheError = (e as Error).message;
      this.logger?.error("bundle: ignoring the cached bundle; the embedded policy stays, and the rollback floor is MinVersion until a bundle is accepted", { file, err: (e as Error).message });
      return;
    }
    const err = this.core.loadCache(text);
    if (err) {
      this.logger?.error("bundle: ignoring the cached bundle; the embedded policy stays, and the rollback floor is MinVersion until a bundle is accepted", { file, reason: reason(err) });
    }
  }

  /**
   * Fetches the bundle once (GET with Accept: application/jose and
   * If-None-Match) and applies it if new. Throws BundleError for a refused
   * bundle, CacheWriteError when it was applied but not cached, other
   * errors for a failed fetch.
   */
  update(): Promise<void> {
    return this.serial(() => this.updateNow());
  }

  private async updateNow(): Promise<void> {
    if (!this.loaded) await this.loadNow();
    const st = this.core.st;
    const now = this.core.now();
    this.core.expire(now);
    st.lastAttempt = now;
    st.fetches++;
    let res: { status: number; body: string; etag: string };
    try {
      checkControlPlane(this.opts.embedded, this.opts.url, now);
      res = await this.fetch(this.core.activeBundle ? this.core.etag : "");
    } catch (e) {
      this.fail(e as Error);
      if (e instanceof BundleError) this.logger?.error("bundle: not fetching", { url: this.opts.url, reason: reason(e) });
      throw e;
    }
    if (res.status === 304) {
      st.notModified++;
      return this.succeed(now);
    }
    if (res.status !== 200) {
      const e = new Error(`bundle: fetching ${this.opts.url}: unexpected status ${res.status}`);
      this.fail(e);
      throw e;
    }
    return this.offer(res.body, "network", res.etag, true);
  }

  /** Applies a bundle obtained another way (a push message, a file), with every check of a fetched one. */
  apply(jws: string): Promise<void> {
    return this.serial(async () => {
      if (!this.loaded) await this.loadNow();
      return this.offer(jws, "push", "", false);
    });
  }

  private async offer(jws: string, source: Source, etag: string, fetched: boolean): Promise<void> {
    const now = this.core.now();
    let applied: boolean;
    try {
      applied = this.core.offer(jws.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, ""), source, etag);
    } catch (e) {
      this.core.st.rejected++;
      const b = e instanceof BundleError ? e.bundle : undefined;
      this.logger?.warn("bundle: refused", { source, name: b?.name, version: b?.version, kid: b?.kid, reason: reason(e as Error) });
      if (fetched) this.fail(e as Error);
      throw e;
    }
    let cacheErr: Error | null = null;
    if (applied) {
      const b = this.core.activeBundle!;
      info(this.logger, "bundle: applied", { name: b.name, version: b.version, kid: b.kid, source });
      if (this.opts.cacheFile) {
        this.cacheDirty = true;
        try {
          await writeCache(this.opts.cacheFile, b.jws);
          this.cacheDirty = false;
        } catch (e) {
          cacheErr = new CacheWriteError(e);
          this.logger?.error("bundle: could not write the cache; the rollback floor will not survive a restart", { file: this.opts.cacheFile, err: (e as Error).message });
        }
      }
    } else if (this.cacheDirty && this.opts.cacheFile && this.core.floorBundle) {
      try {
        await writeCache(this.opts.cacheFile, this.core.floorBundle.jws);
        this.cacheDirty = false;
      } catch {
        // still dirty; tried again at the next success
      }
    }
    if (fetched) this.succeed(now, cacheErr);
    else if (cacheErr) this.core.st.lastError = cacheErr.message;
    if (cacheErr) throw cacheErr;
  }

  private succeed(now: number, cacheErr: Error | null = null): void {
    const st = this.core.st;
    st.lastSuccess = now;
    st.consecutiveFailures = 0;
    st.lastError = cacheErr ? cacheErr.message : "";
  }

  private fail(e: Error): void {
    this.core.st.consecutiveFailures++;
    this.core.st.lastError = e.message;
  }

  private fetch(etag: string): Promise<{ status: number; body: string; etag: string }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Accept: "application/jose" };
      if (etag) headers["If-None-Match"] = etag;
      // https.request never follows redirects: a 3xx is an unexpected status.
      const req = https.request(this.opts.url, { method: "GET", headers, agent: this.cpVerifier.agent, timeout: FETCH_TIMEOUT }, (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on("data", (c: Buffer) => {
          n += c.length;
          if (n > MAX_SIZE + 2) {
            res.destroy();
            reject(new BundleError("malformed", `response from ${this.opts.url} is larger than ${MAX_SIZE} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), etag: String(res.headers.etag ?? "") }));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`bundle: fetching ${this.opts.url}: timed out`)));
      req.on("error", (e) => reject(new Error(`bundle: fetching ${this.opts.url}: ${e.message}`, { cause: e })));
      req.end();
    });
  }

  private stopped: AbortController | null = null;

  /**
   * Loads the cache, then updates every interval until stop() (or the
   * signal), retrying after failures in 5 s doubling up to maxBackoff
   * (±20% jitter), and falling back to the embedded policy as soon as the
   * bundle in effect expires.
   */
  async run(signal?: AbortSignal): Promise<void> {
    const ac = new AbortController();
    this.stopped = ac;
    signal?.addEventListener("abort", () => ac.abort(), { once: true });
    await this.load();
    while (!ac.signal.aborted) {
      let delay = this.opts.interval || DEFAULT_INTERVAL;
      try {
        await this.update();
      } catch (e) {
        if (!(e instanceof CacheWriteError)) delay = this.backoff(this.core.st.consecutiveFailures);
      }
      try {
        await this.wait(delay, ac.signal);
      } catch {
        return;
      }
    }
  }

  stop(): void {
    this.stopped?.abort();
  }

  /** The wait after n consecutive failures (ms). */
  backoff(n: number): number {
    const max = this.opts.maxBackoff || this.opts.interval || DEFAULT_INTERVAL;
    let d = INITIAL_BACKOFF;
    for (let i = 1; i < n && d < max; i++) d *= 2;
    d = d * (0.8 + 0.4 * Math.random());
    return Math.min(d, max);
  }

  private async wait(ms: number, signal: AbortSignal): Promise<void> {
    const sleep = this.opts.sleep ?? sleepFor;
    for (let left = ms; ; ) {
      const now = this.core.now();
      await this.serial(async () => void this.core.expire(now));
      if (left <= 0) return;
      let w = left;
      const b = this.core.activeBundle;
      if (b) w = Math.max(0, Math.min(w, b.exp * 1000 - now));
      await sleep(w, signal);
      if (signal.aborted) throw new Error("stopped");
      left -= w;
    }
  }
}

function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("aborted"));
    const t = setTimeout(resolve, ms);
    t.unref?.();
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(new Error("aborted"));
    }, { once: true });
  });
}

function reason(e: Error): string {
  return e instanceof BundleError ? e.code : e.message;
}

const unix = typeof process.getuid === "function";

async function checkCacheDir(file: string): Promise<void> {
  if (!unix) return;
  const dir = path.dirname(file);
  const st = await fsp.stat(dir);
  const uid = process.geteuid!();
  if (st.uid !== uid && st.uid !== 0) throw new CacheRefusedError(file, `is in ${dir}, owned by uid ${st.uid}, not by this user (uid ${uid}) or root`);
  if (st.mode & 0o1000) return; // sticky, like /tmp
  const perm = st.mode & 0o777;
  if (perm & 0o002 || (perm & 0o020 && st.gid !== process.getegid!())) {
    throw new CacheRefusedError(file, `is in ${dir}, which others can write to (mode ${perm.toString(8).padStart(4, "0")}): they could replace or remove the cache`);
  }
}

/** Reads the cache file if no one but this user could have written it; null when there is none. */
export async function readCache(file: string): Promise<string | null> {
  try {
    await checkCacheDir(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") throw new CacheRefusedError(file, "is a symbolic link");
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CacheRefusedError(file, "is not a regular file");
    if (unix) {
      const uid = process.geteuid!();
      if (st.uid !== uid) throw new CacheRefusedError(file, `is owned by uid ${st.uid}, not by this user (uid ${uid})`);
      const perm = st.mode & 0o777;
      if (perm & 0o022) throw new CacheRefusedError(file, `is writable by group or others (mode ${perm.toString(8).padStart(4, "0")})`);
      if (st.nlink !== 1) throw new CacheRefusedError(file, `has ${st.nlink} hard links, want 1`);
    }
    const buf = Buffer.alloc(MAX_SIZE + 3);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) break;
    }
    if (n > MAX_SIZE + 2) throw new BundleError("malformed", `cache file larger than ${MAX_SIZE} bytes`);
    return buf.subarray(0, n).toString("utf8");
  } finally {
    await fh.close();
  }
}

/** Writes jws to file atomically: a temporary file in the same directory (0600), synced, renamed over the file, the directory synced. */
export async function writeCache(file: string, jws: string): Promise<void> {
  await checkCacheDir(file);
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  let renamed = false;
  try {
    await fh.chmod(0o600);
    await fh.writeFile(jws + "\n");
    await fh.sync();
    await fh.close();
    await fsp.rename(tmp, file);
    renamed = true;
  } finally {
    if (!renamed) {
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true });
    }
  }
  try {
    const d = await fsp.open(dir, constants.O_RDONLY);
    await d.sync().catch(() => undefined);
    await d.close();
  } catch {
    // not every system can sync a directory; the file is in place either way
  }
}
