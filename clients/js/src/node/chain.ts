// Rebuilding the verified chain on Node.js.
//
// Node exposes no API for OpenSSL's verified chain (SSL_get0_verified_chain).
// What it gives, in Node 20:
//
// - tlsSocket.getPeerCertificate(true): the leaf with `issuerCertificate`
//   links that Node builds itself (src/crypto/crypto_common.cc, GetPeerCert,
//   AddIssuerChainToObject, GetLastIssuedCert): each certificate is linked to
//   the first certificate the server sent for which X509_check_issued
//   passes (names, key identifiers, key usage; no signature check), then to
//   an issuer found in the trust store by name. It is not the verified chain:
//   a certificate that merely copies the real CA's subject and key
//   identifier is linked in place of the real issuer (the vector
//   appended-chain-twin-issuer), and certificates it does not link are left
//   out.
// - tlsSocket.getPeerX509Certificate(): the leaf as an X509Certificate whose
//   issuerCertificate links are the certificates as the server sent them, in
//   order (crypto_x509.cc, X509Certificate::GetPeerCert). Client side, it
//   takes them out of the connection's SSL object: a second call, and
//   getPeerCertificate() afterwards, see fewer certificates (the adapter
//   keeps the values so that callers still get them; see verifier.ts).
//
// So the verified chains are rebuilt here from the leaf, the certificates the
// server sent and the trust anchors (the `ca` option, else Node's default
// store), linking a certificate to an issuer only when
// child.checkIssued(parent) and child.verify(parent.publicKey) hold, the
// parent is a CA and valid now, and ending at a trust anchor. Pins are
// matched on any certificate of any chain so built. This runs after Node's
// own validation succeeded (checkServerIdentity), and only narrows it.

import { createHash, X509Certificate } from "node:crypto";
import tls from "node:tls";
import { chainCert, type ChainCert } from "../core/verify.js";

/** A set of trust anchors, indexed by subject. */
export class TrustAnchors {
  readonly bySubject = new Map<string, X509Certificate[]>();
  readonly fingerprints = new Set<string>();
  constructor(readonly certs: readonly X509Certificate[]) {
    for (const c of certs) {
      if (this.fingerprints.has(c.fingerprint256)) continue;
      this.fingerprints.add(c.fingerprint256);
      const l = this.bySubject.get(c.subject) ?? [];
      l.push(c);
      this.bySubject.set(c.subject, l);
    }
  }
}

const PEM_RE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

function parsePEMs(x: string | Buffer): X509Certificate[] {
  const s = typeof x === "string" ? x : x.toString("latin1");
  if (!s.includes("-----BEGIN")) return [new X509Certificate(x)]; // DER
  return (s.match(PEM_RE) ?? []).map((p) => new X509Certificate(p));
}

type CAOption = string | Buffer | readonly (string | Buffer)[];

const byObject = new WeakMap<object, TrustAnchors>();
const byString = new Map<string, TrustAnchors>();
let defaults: TrustAnchors | null = null;

/**
 * The trust anchors Node validates against for a `ca` option: its
 * certificates, or without it Node's default store (tls.getCACertificates
 * ("default") where Node has it, which includes NODE_EXTRA_CA_CERTS; on
 * Node 20, tls.rootCertificates, the bundled Mozilla list). Parsed once
 * and cached.
 */
export function trustAnchors(ca?: CAOption): TrustAnchors {
  if (ca === undefined || ca === null) {
    if (!defaults) {
      const t = tls as unknown as { getCACertificates?: (kind: string) => string[] };
      const list = typeof t.getCACertificates === "function" ? t.getCACertificates("default") : tls.rootCertificates;
      defaults = new TrustAnchors(list.flatMap(parsePEMs));
    }
    return defaults;
  }
  if (typeof ca === "string") {
    let a = byString.get(ca);
    if (!a) {
      a = new TrustAnchors(parsePEMs(ca));
      if (byString.size >= 16) byString.delete(byString.keys().next().value!);
      byString.set(ca, a);
    }
    return a;
  }
  let a = byObject.get(ca as object);
  if (!a) {
    const list = Array.isArray(ca) ? (ca as (string | Buffer)[]) : [ca as Buffer];
    a = new TrustAnchors(list.flatMap(parsePEMs));
    byObject.set(ca as object, a);
  }
  return a;
}

/** Bounded memo of per-certificate work, keyed by SHA-256 fingerprint. */
class LRU<V> {
  private m = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    if (this.m.size > this.max) this.m.delete(this.m.keys().next().value!);
  }
}

const certs = new LRU<ChainCert>(2048);
const links = new LRU<boolean>(4096);
const validity = new LRU<[number, number]>(2048);

const nodeSha256 = (b: Uint8Array) => createHash("sha256").update(b).digest();

/** The core's view of a certificate, digests computed once per certificate. */
export function toChainCert(x: X509Certificate): ChainCert {
  const fp = x.fingerprint256;
  let c = certs.get(fp);
  if (!c) {
    c = chainCert(new Uint8Array(x.raw), nodeSha256, fp.replace(/:/g, "").toLowerCase());
    certs.set(fp, c);
  }
  return c;
}

function validNow(x: X509Certificate, now: number): boolean {
  let v = validity.get(x.fingerprint256);
  if (!v) {
    v = [Date.parse(x.validFrom), Date.parse(x.validTo)];
    validity.set(x.fingerprint256, v);
  }
  return now >= v[0] && now <= v[1];
}

/** child is issued and signed by parent (cached by both fingerprints). */
function signedBy(child: X509Certificate, parent: X509Certificate): boolean {
  const k = child.fingerprint256 + " " + parent.fingerprint256;
  let ok = links.get(k);
  if (ok === undefined) {
    ok = parent.ca && child.checkIssued(parent) && child.verify(parent.publicKey);
    links.set(k, ok);
  }
  return ok;
}

const MAX_DEPTH = 10;
const MAX_CHAINS = 16;
const MAX_LINK_CHECKS = 256;

/**
 * Every chain from leaf to a trust anchor through the certificates the
 * server sent, linked by signatures. now is the real time (ms), for the
 * validity of the issuers.
 */
export function buildChains(leaf: X509Certificate, served: readonly X509Certificate[], anchors: TrustAnchors, now = Date.now()): X509Certificate[][] {
  const out: X509Certificate[][] = [];
  if (anchors.fingerprints.has(leaf.fingerprint256)) return [[leaf]];
  const pool: X509Certificate[] = [];
  const seen = new Set<string>([leaf.fingerprint256]);
  for (const c of served) {
    if (seen.has(c.fingerprint256)) continue;
    seen.add(c.fingerprint256);
    pool.push(c);
  }
  let budget = MAX_LINK_CHECKS;
  const walk = (chain: X509Certificate[]) => {
    if (out.length >= MAX_CHAINS || chain.length > MAX_DEPTH) return;
    const cur = chain[chain.length - 1]!;
    // Anchors first (a root the server also sent ends the chain there),
    // then what the server sent.
    const candidates: [X509Certificate, boolean][] = [];
    for (const a of anchors.bySubject.get(cur.issuer) ?? []) if (!seen.has(a.fingerprint256)) candidates.push([a, true]);
    for (const p of pool) candidates.push([p, anchors.fingerprints.has(p.fingerprint256)]);
    for (const [p, isAnchor] of candidates) {
      if (chain.some((c) => c.fingerprint256 === p.fingerprint256)) continue;
      if (budget-- <= 0) return;
      if (!validNow(p, now) || !signedBy(cur, p)) continue;
      if (isAnchor) out.push([...chain, p]);
      else walk([...chain, p]);
      if (out.length >= MAX_CHAINS) return;
    }
  };
  walk([leaf]);
  return out;
}

/** The certificates the server sent, leaf first, from getPeerX509Certificate(). */
export function servedList(leaf: X509Certificate | undefined): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (let c = leaf; c && out.length < 32; c = c.issuerCertificate) out.push(c);
  return out;
}

/** A fallback when getPeerX509Certificate() gives nothing: the certificates of getPeerCertificate(true)'s walk. */
export function fromDetailed(cert: tls.DetailedPeerCertificate | undefined): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<unknown>();
  for (let c = cert; c && c.raw && !seen.has(c) && out.length < 32; c = c.issuerCertificate) {
    seen.add(c);
    out.push(new X509Certificate(c.raw));
  }
  return out;
}
