// Signed pin bundles (pin/bundle/bundle.go): a JWS in compact serialization,
// ES256, ES384 or EdDSA, verified with @noble/curves (no WebCrypto: Hermes
// has none), in exactly Go's order of checks, which decides the error class.

import { ed25519 } from "@noble/curves/ed25519.js";
import { p256, p384 } from "@noble/curves/nist.js";
import { sha256, sha384 } from "@noble/hashes/sha2.js";
import { b64url, utf8Decode, utf8Encode, utf8Length } from "./bytes.js";
import { JsonNumber, parseJSON, type JsonObject, type JsonValue } from "./json.js";
import { Policy, PolicyError, parsePolicy } from "./policy.js";

export const BUNDLE_TYPE = "rampart-pin-bundle+jws";
/** Largest bundle, in bytes of compact serialization. */
export const MAX_SIZE = 1 << 20;
/** How far in the future iat may be (ms). */
export const CLOCK_SKEW = 5 * 60 * 1000;
/** Longest validity, exp - iat (seconds): 366 days. */
export const MAX_LIFETIME = 366 * 24 * 3600;

export type BundleErrorCode =
  | "malformed"
  | "unknown-key"
  | "bad-signature"
  | "expired"
  | "not-yet-valid"
  | "wrong-name"
  | "rollback"
  | "control-plane-not-pinned";

/** A refused bundle; code is the class of the refusal. */
export class BundleError extends Error {
  constructor(readonly code: BundleErrorCode, detail: string, readonly bundle?: Bundle) {
    super(`bundle: ${MESSAGES[code]}: ${detail}`);
    this.name = "BundleError";
  }
}

const MESSAGES: Record<BundleErrorCode, string> = {
  malformed: "malformed",
  "unknown-key": "signed by an unknown key",
  "bad-signature": "bad signature",
  expired: "expired",
  "not-yet-valid": "not yet valid",
  "wrong-name": "wrong bundle name",
  rollback: "rollback refused",
  "control-plane-not-pinned": "the control plane is not pinned by the embedded policy (add an enforced rule for its host)",
};

export type Alg = "ES256" | "ES384" | "EdDSA";

export interface TrustedKey {
  readonly kid: string;
  readonly alg: Alg;
  /** P-256/P-384: the uncompressed point 04||x||y; Ed25519: the 32-byte key. */
  readonly publicKey: Uint8Array;
}

/** A verified bundle. */
export interface Bundle {
  readonly name: string;
  readonly version: number;
  /** Seconds since the epoch. */
  readonly iat: number;
  readonly exp: number;
  /** RFC 7638 thumbprint of the key that signed it. */
  readonly kid: string;
  readonly policy: Policy;
  /** The compact serialization, as verified. */
  readonly jws: string;
}

function truncate(s: string): string {
  return s.length > 64 ? s.slice(0, 64) + "..." : s;
}

/** The trusted bundle signing keys, indexed by RFC 7638 thumbprint. */
export class Keys {
  private readonly byKid = new Map<string, TrustedKey>();

  /** Reads a JWK Set ({"keys": [...]}) or one JWK; throws Error. */
  static parse(input: string | JsonValue): Keys {
    const v = typeof input === "string" ? parseJSON(input) : input;
    if (!(v instanceof Map)) throw new Error("bundle: keys: want a JWK Set or a JWK");
    const k = new Keys();
    const set = v.get("keys");
    if (set !== undefined) {
      if (!Array.isArray(set) || set.length === 0) throw new Error("bundle: keys: empty JWK Set");
      for (const j of set) k.add(parseJWK(j));
    } else {
      k.add(parseJWK(v));
    }
    return k;
  }

  add(key: TrustedKey): void {
    this.byKid.set(key.kid, key);
  }

  get(kid: string): TrustedKey | undefined {
    return this.byKid.get(kid);
  }

  ids(): string[] {
    return [...this.byKid.keys()].sort();
  }

  get size(): number {
    return this.byKid.size;
  }
}

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k"];

function parseJWK(v: JsonValue): TrustedKey {
  if (!(v instanceof Map)) throw new Error("bundle: keys: a JWK is a JSON object");
  const s = (name: string): string | undefined => {
    const x = v.get(name);
    if (x === undefined) return undefined;
    if (typeof x !== "string") throw new Error(`bundle: keys: JWK member ${name} must be a string`);
    return x;
  };
  for (const m of PRIVATE_MEMBERS) {
    if (v.has(m)) {
      if (m === "k") throw new Error("bundle: keys: a symmetric (oct) key cannot verify bundles; give the signing key's public key");
      throw new Error("bundle: this is a private key; give the public key (rampart bundle keygen writes NAME.pub)");
    }
  }
  const kty = s("kty");
  const crv = s("crv");
  const x = s("x");
  let key: TrustedKey;
  if (kty === "EC" && (crv === "P-256" || crv === "P-384")) {
    const size = crv === "P-256" ? 32 : 48;
    const xb = x === undefined ? null : b64url.decode(x);
    const y = s("y");
    const yb = y === undefined ? null : b64url.decode(y);
    if (!xb || !yb || xb.length !== size || yb.length !== size) throw new Error(`bundle: keys: invalid ${crv} JWK: x and y must be ${size} bytes of base64url`);
    const pub = new Uint8Array(1 + 2 * size);
    pub[0] = 4;
    pub.set(xb, 1);
    pub.set(yb, 1 + size);
    const curve = crv === "P-256" ? p256 : p384;
    try {
      curve.Point.fromBytes(pub).assertValidity();
    } catch {
      throw new Error(`bundle: invalid ECDSA public key: not a point of ${crv}`);
    }
    const alg: Alg = crv === "P-256" ? "ES256" : "ES384";
    key = { kid: thumbprint({ crv, kty: "EC", x: b64url.encode(xb), y: b64url.encode(yb) }), alg, publicKey: pub };
  } else if (kty === "OKP" && crv === "Ed25519") {
    const xb = x === undefined ? null : b64url.decode(x);
    if (!xb || xb.length !== 32) throw new Error("bundle: keys: invalid Ed25519 JWK: x must be 32 bytes of base64url");
    try {
      ed25519.Point.fromBytes(xb);
    } catch {
      throw new Error("bundle: invalid Ed25519 public key");
    }
    key = { kid: thumbprint({ crv, kty: "OKP", x: b64url.encode(xb) }), alg: "EdDSA", publicKey: xb };
  } else {
    throw new Error(`bundle: keys: JWK kty ${JSON.stringify(kty ?? "")} crv ${JSON.stringify(crv ?? "")} is not accepted (want EC P-256, EC P-384 or OKP Ed25519)`);
  }
  const kid = s("kid");
  if (kid !== undefined && kid !== "" && kid !== key.kid) {
    throw new Error(`bundle: keys: JWK kid ${JSON.stringify(truncate(kid))} is not the key's RFC 7638 thumbprint ${JSON.stringify(key.kid)}, which is what bundles name`);
  }
  const alg = s("alg");
  if (alg !== undefined && alg !== "" && alg !== key.alg) throw new Error(`bundle: keys: JWK ${key.kid}: alg ${JSON.stringify(truncate(alg))}, but the key signs with ${key.alg}`);
  const use = s("use");
  if (use !== undefined && use !== "" && use !== "sig") throw new Error(`bundle: keys: JWK ${key.kid}: use ${JSON.stringify(truncate(use))}: want sig`);
  return Object.freeze(key);
}

/** RFC 7638: SHA-256 of the required members, in lexicographic order, no white space. */
function thumbprint(members: Record<string, string>): string {
  const json = "{" + Object.keys(members).sort().map((k) => `${JSON.stringify(k)}:${JSON.stringify(members[k])}`).join(",") + "}";
  return b64url.encode(sha256(utf8Encode(json)));
}

/** Decodes a strict JSON object from UTF-8 bytes; throws a plain message. */
function decodeObject(b: Uint8Array): JsonObject {
  const s = utf8Decode(b);
  if (s === null) throw new Error("not UTF-8");
  const v = parseJSON(s);
  if (!(v instanceof Map)) throw new Error("not a JSON object");
  return v;
}

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

function int64(name: string, v: JsonValue): bigint {
  if (!(v instanceof JsonNumber)) throw new BundleError("malformed", `payload: ${JSON.stringify(name)}: want an integer`);
  const n = v.bigint();
  if (n === null || n > INT64_MAX || n < INT64_MIN) throw new BundleError("malformed", `payload: ${JSON.stringify(name)}: ${truncate(v.text)} is not an integer of 64 bits`);
  return n;
}

/** Checks a bundle name: [a-z0-9][a-z0-9._-]{0,63}. Returns a message or null. */
export function checkBundleName(name: string): string | null {
  if (name === "" || name.length > 64) return `bundle name ${JSON.stringify(truncate(name))}: want 1 to 64 characters`;
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) return `bundle name ${JSON.stringify(truncate(name))}: want lowercase letters, digits, '.', '_' and '-', starting with a letter or digit`;
  return null;
}

/** include_subdomains on a public suffix: without the Public Suffix List, single-label names only. */
function checkScope(p: Policy): string | null {
  for (const d of p.domains) {
    if (d.includeSubdomains && !d.name.includes(".")) {
      return `rule ${truncate(d.name)}: include_subdomains on a public suffix would pin every site registered under it (public-suffix)`;
    }
  }
  return null;
}

const B64URL_RE = /^[A-Za-z0-9_-]*$/;

/**
 * Verifies a bundle at now (ms) and returns it. Throws BundleError; for
 * "expired" and "not-yet-valid" the error carries the authentic bundle
 * (the updater takes its rollback floor from an expired cache).
 */
export function verifyBundle(jws: string, keys: Keys, now: number): Bundle {
  if (jws.length > MAX_SIZE || (jws.length > MAX_SIZE / 3 && utf8Length(jws) > MAX_SIZE)) {
    throw new BundleError("malformed", `larger than ${MAX_SIZE} bytes`);
  }
  if (jws.replace(/^[ \t\r\n]+/, "").startsWith("{")) throw new BundleError("malformed", "JWS JSON serialization is not accepted; want the compact serialization");
  const parts = jws.split(".");
  if (parts.length !== 3) throw new BundleError("malformed", `want a JWS in compact serialization (three parts separated by dots), got ${parts.length} parts`);
  const names = ["protected header", "payload", "signature"];
  const decoded: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) {
    const p = parts[i]!;
    if (!B64URL_RE.test(p)) {
      const bad = [...p].find((c) => !/[A-Za-z0-9_-]/.test(c));
      throw new BundleError("malformed", `${names[i]}: invalid character ${JSON.stringify(bad)} in base64url`);
    }
    const d = b64url.decode(p);
    if (!d) throw new BundleError("malformed", `${names[i]}: not canonical base64url`);
    decoded.push(d);
  }
  const [hdrBytes, payloadBytes, sig] = decoded as [Uint8Array, Uint8Array, Uint8Array];
  if (payloadBytes.length === 0) throw new BundleError("malformed", "empty payload");
  let hdr: JsonObject;
  try {
    hdr = decodeObject(hdrBytes);
  } catch (e) {
    throw new BundleError("malformed", `protected header: ${(e as Error).message}`);
  }
  for (const k of hdr.keys()) {
    if (k !== "alg" && k !== "kid" && k !== "typ") {
      throw new BundleError("malformed", `protected header: member ${JSON.stringify(truncate(k))} is not accepted (only alg, kid and typ)`);
    }
  }
  const h: Record<string, string> = {};
  for (const name of ["alg", "kid", "typ"]) {
    const v = hdr.get(name);
    if (v === undefined) throw new BundleError("malformed", `protected header: ${JSON.stringify(name)} is missing`);
    if (typeof v !== "string" || v === "") throw new BundleError("malformed", `protected header: ${JSON.stringify(name)} must be a non-empty string`);
    h[name] = v;
  }
  const typ = h.typ!.toLowerCase();
  if (typ !== BUNDLE_TYPE && typ !== "application/" + BUNDLE_TYPE) throw new BundleError("malformed", `typ ${JSON.stringify(truncate(h.typ!))}: want ${JSON.stringify(BUNDLE_TYPE)}`);
  const alg = h.alg!;
  const kid = h.kid!;
  if (alg !== "ES256" && alg !== "ES384" && alg !== "EdDSA") throw new BundleError("bad-signature", `alg ${JSON.stringify(truncate(alg))} is not accepted (only ES256, ES384 and EdDSA)`);
  const key = keys.get(kid);
  if (!key) throw new BundleError("unknown-key", `kid ${JSON.stringify(truncate(kid))} is not a trusted key (trusted: ${keys.ids().join(", ")})`);
  if (alg !== key.alg) throw new BundleError("bad-signature", `alg ${alg}, but key ${kid} signs with ${key.alg}`);
  const signingInput = utf8Encode(parts[0] + "." + parts[1]);
  if (!verifySignature(key, signingInput, sig)) throw new BundleError("bad-signature", `the signature does not verify with key ${kid}`);
  const b = decodePayload(payloadBytes, kid, jws);
  if (now >= b.exp * 1000) throw new BundleError("expired", `${b.name} version ${b.version} expired at ${iso(b.exp)}`, b);
  if (b.iat * 1000 > now + CLOCK_SKEW) {
    throw new BundleError("not-yet-valid", `${b.name} version ${b.version} is issued at ${iso(b.iat)}, more than 5m0s after now (${iso(Math.floor(now / 1000))}): check the clock`, b);
  }
  return b;
}

function iso(s: number): string {
  return new Date(s * 1000).toISOString().replace(".000Z", "Z");
}

function bytesToBig(b: Uint8Array): bigint {
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n;
}

/**
 * A platform's signature primitive: true when sig (raw R||S for ECDSA, 64
 * bytes for Ed25519) verifies msg with key. It is called only after this
 * module's own checks of the signature's length and of R and S ranges.
 */
export type SignatureCheck = (key: TrustedKey, msg: Uint8Array, sig: Uint8Array) => boolean;

let platformCheck: SignatureCheck | null = null;

/**
 * Makes verifyBundle use fn for the signature primitive instead of
 * @noble/curves (null: back to noble). The Node.js integration installs
 * node:crypto's (OpenSSL), about ten times faster; React Native keeps
 * noble, since Hermes has no WebCrypto.
 */
export function useSignatureCheck(fn: SignatureCheck | null): void {
  platformCheck = fn;
}

function verifySignature(key: TrustedKey, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    if (key.alg === "EdDSA") {
      if (sig.length !== 64) return false;
      if (platformCheck) return platformCheck(key, msg, sig);
      return ed25519.verify(sig, msg, key.publicKey, { zip215: false });
    }
    const curve = key.alg === "ES256" ? p256 : p384;
    const size = key.alg === "ES256" ? 32 : 48;
    // Raw R||S of exactly twice the field size (RFC 7518 §3.4), with R and
    // S in [1, n-1], checked here rather than left to the library; a high S
    // is valid (JOSE does not require low S).
    if (sig.length !== 2 * size) return false;
    const n = curve.Point.CURVE().n;
    const r = bytesToBig(sig.subarray(0, size));
    const s = bytesToBig(sig.subarray(size));
    if (r < 1n || r >= n || s < 1n || s >= n) return false;
    if (platformCheck) return platformCheck(key, msg, sig);
    const digest = key.alg === "ES256" ? sha256(msg) : sha384(msg);
    return curve.verify(sig, digest, key.publicKey, { prehash: false, lowS: false, format: "compact" });
  } catch {
    return false;
  }
}

const PAYLOAD_FIELDS = ["bundle", "version", "iat", "exp", "policy"];

function decodePayload(body: Uint8Array, kid: string, jws: string): Bundle {
  let m: JsonObject;
  try {
    m = decodeObject(body);
  } catch (e) {
    throw new BundleError("malformed", `payload: ${(e as Error).message}`);
  }
  for (const k of m.keys()) {
    if (!PAYLOAD_FIELDS.includes(k)) throw new BundleError("malformed", `payload: unknown member ${JSON.stringify(truncate(k))} (want bundle, version, iat, exp and policy)`);
  }
  for (const f of PAYLOAD_FIELDS) if (!m.has(f)) throw new BundleError("malformed", `payload: ${JSON.stringify(f)} is missing`);
  const name = m.get("bundle")!;
  if (typeof name !== "string") throw new BundleError("malformed", `payload: "bundle": want a string`);
  const version = int64("version", m.get("version")!);
  const iat = int64("iat", m.get("iat")!);
  const exp = int64("exp", m.get("exp")!);
  const nameErr = checkBundleName(name);
  if (nameErr) throw new BundleError("malformed", `payload: ${nameErr}`);
  if (version < 1n) throw new BundleError("malformed", `payload: version ${version}: want 1 or more`);
  if (version > BigInt(Number.MAX_SAFE_INTEGER)) throw new BundleError("malformed", `payload: version ${version}: this client reads versions up to 2^53-1`);
  if (iat <= 0n || exp <= iat) throw new BundleError("malformed", `payload: want 0 < iat < exp, got iat ${iat}, exp ${exp}`);
  if (exp - iat > BigInt(MAX_LIFETIME)) {
    throw new BundleError("malformed", `payload: expiry is ${(exp - iat) / 86400n} days after the issue time; a bundle may live at most ${MAX_LIFETIME / 86400} days (MaxLifetime)`);
  }
  if (exp > BigInt(Number.MAX_SAFE_INTEGER)) throw new BundleError("malformed", `payload: exp ${exp}: this client reads times up to 2^53-1 seconds`);
  const pv = m.get("policy")!;
  if (!(pv instanceof Map)) throw new BundleError("malformed", "payload: policy must be an object");
  let policy: Policy;
  try {
    policy = parsePolicy(pv);
  } catch (e) {
    if (e instanceof PolicyError) throw new BundleError("malformed", `payload: ${e.message}`);
    throw e;
  }
  const scope = checkScope(policy);
  if (scope) throw new BundleError("malformed", `payload: policy: ${scope}`);
  return Object.freeze({ name, version: Number(version), iat: Number(iat), exp: Number(exp), kid, policy, jws });
}

/** Whether two bundles say the same thing, whatever their signatures. */
export function sameContent(a: Bundle, b: Bundle): boolean {
  return a.name === b.name && a.version === b.version && a.iat === b.iat && a.exp === b.exp && a.policy.canonical() === b.policy.canonical();
}
