// The pin check of one connection, as pin/verify.go's verifyRule: pins are
// matched against verified chains only (any certificate of any of them);
// an expired pin set allows and reports; report-only allows and reports;
// an enforced mismatch refuses with an error naming the verified chains.

import { sha256 } from "@noble/hashes/sha2.js";
import { b64, toHex, utf8Encode } from "./bytes.js";
import { parseCertificate } from "./der.js";
import { Pin } from "./pin.js";
import { expired, type Domain, type Policy } from "./policy.js";

/** A certificate as the pin check sees it, with its digests computed once. */
export interface ChainCert {
  /** The DER certificate. */
  readonly der: Uint8Array;
  /** Standard base64 of the SHA-256 of its SubjectPublicKeyInfo (the value of its SPKI pin). */
  readonly spki: string;
  /** Lowercase hex of the SHA-256 of the certificate (the value of its certificate pin). */
  readonly fingerprint: string;
  /** The subject, as Go's pkix.Name.String writes it. */
  readonly subject: string;
}

export type Hash = (data: Uint8Array) => Uint8Array;

/** Builds a ChainCert from DER; hash defaults to @noble/hashes' SHA-256. */
export function chainCert(der: Uint8Array, hash: Hash = sha256, fingerprintHex?: string): ChainCert {
  const f = parseCertificate(der);
  return Object.freeze({
    der,
    spki: b64.encode(hash(f.spki)),
    fingerprint: fingerprintHex ?? toHex(hash(der)),
    subject: f.subject,
  });
}

export type Reason = "pin-mismatch" | "pin-set-expired" | "no-verified-chain";

/** One pin validation failure, handed to the reporter. */
export interface Failure {
  /** ms since the epoch. */
  readonly time: number;
  /** The server name connected to, as the caller spelled it. */
  readonly host: string;
  readonly port: number;
  readonly domain: Domain;
  readonly reason: Reason;
  /** The certificates as the server sent them, leaf first. */
  readonly served: readonly ChainCert[];
  /** The verified chains, leaf first, each ending at a trust anchor. */
  readonly chains: readonly (readonly ChainCert[])[];
}

/**
 * The failure's identity for 24-hour deduplication: the SHA-256 of the
 * reason, host, port, the rule (name, mode, include_subdomains, expiry,
 * SPKI pins then certificate pins) and the served chain and first verified
 * chain, each length-prefixed, as Go's Failure.Key.
 */
export function failureKey(f: Failure): string {
  const h = sha256.create();
  const n = new Uint8Array(8);
  const count = (i: number) => {
    // 8 bytes, big-endian (Go's binary.BigEndian.PutUint64); without
    // DataView's BigInt methods, which not every engine has.
    const hi = Math.floor(i / 0x100000000);
    const lo = i >>> 0;
    for (let k = 0; k < 4; k++) {
      n[k] = (hi >>> (24 - 8 * k)) & 0xff;
      n[4 + k] = (lo >>> (24 - 8 * k)) & 0xff;
    }
    h.update(n);
  };
  const raw = (b: Uint8Array) => {
    count(b.length);
    h.update(b);
  };
  const field = (s: string) => raw(utf8Encode(s));
  field(f.reason);
  field(f.host);
  field(String(f.port));
  const d = f.domain;
  field(d.name);
  field(d.mode);
  field(String(d.includeSubdomains));
  field(d.expiresAt === null ? "" : rfc3339(d.expiresAt));
  for (const kind of ["spki", "cert"] as const) {
    const pins = d.pins.filter((p) => p.kind === kind);
    count(pins.length);
    for (const p of pins) raw(p.digest);
  }
  count(f.served.length);
  for (const c of f.served) raw(c.der);
  const chain = f.chains[0] ?? [];
  count(chain.length);
  for (const c of chain) raw(c.der);
  return toHex(h.digest());
}

/** RFC 3339 in UTC to the second, as Go's time.RFC3339 for UTC times. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/** Receives failures, in both modes. report must not block. */
export interface Reporter {
  report(f: Failure): void;
}

/** The refusal of an enforced host whose verified chains match none of its pins. */
export class PinMismatchError extends Error {
  readonly code = "ERR_RAMPART_PIN_MISMATCH";
  constructor(
    readonly host: string,
    readonly rule: string,
    readonly chains: readonly (readonly ChainCert[])[],
    readonly pins: readonly Pin[],
  ) {
    super(mismatchMessage(host, rule, chains, pins));
    this.name = "PinMismatchError";
  }
}

function mismatchMessage(host: string, rule: string, chains: readonly (readonly ChainCert[])[], pins: readonly Pin[]): string {
  let s = `pin: certificate pinning failure for ${host}`;
  if (rule !== host) s += ` (rule ${rule})`;
  s += ": no pin matches the verified chain";
  const withCert = pins.some((p) => p.kind === "cert");
  chains.forEach((chain, i) => {
    s += chains.length > 1 ? `\n  verified chain ${i}:` : "\n  verified chain:";
    for (const c of chain) {
      s += `\n    sha256/${c.spki}: ${c.subject}`;
      if (withCert) s += `\n      cert-sha256:${c.fingerprint}`;
    }
  });
  s += "\n  pinned:";
  for (const p of pins) s += `\n    ${p}`;
  return s;
}

/** The refusal of an enforced host when no verified chain is known. */
export class NoVerifiedChainError extends Error {
  readonly code = "ERR_RAMPART_NO_VERIFIED_CHAIN";
  constructor(readonly host: string, detail = "") {
    super(`pin: no verified certificate chain to check pins against for ${host}${detail ? ": " + detail : ""}`);
    this.name = "NoVerifiedChainError";
  }
}

/** The first pin of d found in chains, in chain order, leaf first. */
export function matchPins(d: Domain, chains: readonly (readonly ChainCert[])[]): Pin | null {
  const pins = d.pins;
  for (const chain of chains) {
    for (const c of chain) {
      for (const p of pins) {
        if (p.value === (p.kind === "spki" ? c.spki : c.fingerprint)) return p;
      }
    }
  }
  return null;
}

/** What the check decided: error set means refuse; failure set means report. */
export interface Decision {
  readonly rule: Domain | null;
  readonly error?: Error;
  readonly failure?: Failure;
}

/**
 * Applies the rule for host to a connection whose served certificates and
 * verified chains are given, at now (ms). Pure: reporting is the caller's.
 */
export function evaluate(
  policy: Policy,
  host: string,
  port: number,
  served: readonly ChainCert[],
  chains: readonly (readonly ChainCert[])[],
  now: number,
  noChainDetail = "",
): Decision {
  const d = policy.match(host);
  if (!d) return { rule: null };
  const fail = (reason: Reason, ch: readonly (readonly ChainCert[])[]): Failure => ({ time: now, host, port, domain: d, reason, served, chains: ch });
  if (expired(d, now)) return { rule: d, failure: fail("pin-set-expired", chains) };
  if (chains.length === 0) {
    const failure = fail("no-verified-chain", []);
    return d.mode === "report-only" ? { rule: d, failure } : { rule: d, failure, error: new NoVerifiedChainError(host, noChainDetail) };
  }
  if (matchPins(d, chains)) return { rule: d };
  const failure = fail("pin-mismatch", chains);
  if (d.mode === "report-only") return { rule: d, failure };
  return { rule: d, failure, error: new PinMismatchError(host, d.name, chains, d.pins) };
}

/** Whether an enforcing client under policy refuses a connection (no reporting): for re-checks after a policy change. */
export function refuses(policy: Policy, host: string, chains: readonly (readonly ChainCert[])[], now: number): boolean {
  const d = policy.match(host);
  if (!d || d.mode !== "enforce" || expired(d, now)) return false;
  return matchPins(d, chains) === null;
}

