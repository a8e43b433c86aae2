// RFC 7469 §3 failure reports with Rampart's members (pin/report/report.go),
// and their delivery: a bounded queue, one report at a time, at most once
// per 24 hours per failure and report URI, never blocking the connection.

import { b64 } from "./bytes.js";
import { failureKey, rfc3339, type ChainCert, type Failure, type Reporter } from "./verify.js";

/** The library version reports carry in rampart-library-version. */
export const LIBRARY_VERSION = "js/0.1.0";

export function pem(der: Uint8Array): string {
  const b = b64.encode(der);
  let s = "-----BEGIN CERTIFICATE-----\n";
  for (let i = 0; i < b.length; i += 64) s += b.slice(i, i + 64) + "\n";
  return s + "-----END CERTIFICATE-----\n";
}

/** The report of a failure, with the members in the order Go writes them. */
export function buildReport(f: Failure, libraryVersion = LIBRARY_VERSION): Record<string, unknown> {
  const d = f.domain;
  const chain = (c: readonly ChainCert[]) => c.map((x) => pem(x.der));
  const r: Record<string, unknown> = {
    "date-time": rfc3339(f.time),
    hostname: f.host,
    port: f.port,
    "effective-expiration-date": d.expiresAt === null ? null : rfc3339(d.expiresAt),
    "include-subdomains": d.includeSubdomains,
    "noted-hostname": d.name,
    "served-certificate-chain": chain(f.served),
    "validated-certificate-chain": f.chains.length ? chain(f.chains[0]!) : [],
    "known-pins": d.pins.filter((p) => p.kind === "spki").map((p) => `pin-sha256="${p.base64()}"`),
    "rampart-mode": d.mode,
    "rampart-reason": f.reason,
    "rampart-library-version": libraryVersion,
  };
  const certPins = d.pins.filter((p) => p.kind === "cert").map((p) => p.toString());
  if (certPins.length) r["rampart-known-cert-pins"] = certPins;
  return r;
}

/** Keys seen in the last ttl, at most max of them (internal/util/dedup.Window). */
export class DedupWindow {
  private seen = new Map<string, number>();
  constructor(readonly ttl = 24 * 3600 * 1000, readonly max = 4096) {}

  /** True (and records key) unless key was recorded less than ttl before now. */
  first(key: string, now: number): boolean {
    const at = this.seen.get(key);
    if (at !== undefined && now - at < this.ttl) return false;
    this.seen.delete(key);
    this.seen.set(key, now);
    for (const [k, t] of this.seen) {
      if (now - t < this.ttl && this.seen.size <= this.max) break;
      this.seen.delete(k);
    }
    return true;
  }

  forget(key: string): void {
    this.seen.delete(key);
  }

  get size(): number {
    return this.seen.size;
  }
}

/** Posts one report body (JSON) to uri; rejects when it was not accepted (not 2xx). */
export type ReportSender = (uri: string, body: string) => Promise<void>;

export interface ReportStats {
  sent: number;
  failed: number;
  dropped: number;
  duplicates: number;
  noURI: number;
}

export interface ReportQueueOptions {
  /** Posts a report. Node: nodeReportSender(); React Native: a fetch-based sender. */
  send: ReportSender;
  /** Reports waiting to be sent at most; 0 means 256. */
  queueSize?: number;
  /** Clock of the 24-hour deduplication (ms). */
  now?: () => number;
  /** Told of delivery failures (never given report contents). */
  onError?: (uri: string, host: string, err: unknown) => void;
  libraryVersion?: string;
}

/**
 * Sends reports asynchronously, one at a time. report() never blocks and
 * never throws: a full queue drops the report (counted).
 */
export class ReportQueue implements Reporter {
  private readonly window = new DedupWindow();
  private queue: { f: Failure; key: string }[] = [];
  private running = false;
  private waiters: (() => void)[] = [];
  private closed = false;
  readonly stats: ReportStats = { sent: 0, failed: 0, dropped: 0, duplicates: 0, noURI: 0 };

  constructor(private readonly opts: ReportQueueOptions) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  report(f: Failure): void {
    if (!f.domain.reportURI) {
      this.stats.noURI++;
      return;
    }
    if (this.closed) {
      this.stats.dropped++;
      return;
    }
    const key = failureKey(f) + " " + f.domain.reportURI;
    if (!this.window.first(key, this.now())) {
      this.stats.duplicates++;
      return;
    }
    if (this.queue.length >= (this.opts.queueSize || 256)) {
      this.window.forget(key);
      this.stats.dropped++;
      return;
    }
    this.queue.push({ f, key });
    if (!this.running) {
      this.running = true;
      // Off the connection's path: the first send starts on a later turn.
      setTimeout(() => void this.run(), 0);
    }
  }

  private async run(): Promise<void> {
    for (;;) {
      const q = this.queue.shift();
      if (!q) break;
      try {
        const body = JSON.stringify(buildReport(q.f, this.opts.libraryVersion));
        await this.opts.send(q.f.domain.reportURI, body);
        this.stats.sent++;
      } catch (err) {
        this.stats.failed++;
        this.window.forget(q.key); // a later identical failure may try again
        try {
          this.opts.onError?.(q.f.domain.reportURI, q.f.host, err);
        } catch {
          // a logger's failure is not the queue's
        }
      }
    }
    this.running = false;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once every queued report was sent or failed. */
  flush(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Stops accepting reports; queued ones are still sent. */
  close(): void {
    this.closed = true;
  }
}
