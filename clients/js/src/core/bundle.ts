// Signed pin bundles: verification exactly as Go's bundle.Verify (the order
// of its checks decides the error class), and the acceptance rules of
// bundle.Updater (name, minimum version, rollback floor, equivocation, the
// embedded policy as the floor).

import { p256, p384 } from "@noble/curves/nist.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { base64urlDecode, base64urlEncode } from "./b64.js";
import { JsonError, JsonNumber, JsonObject, JsonValue, parseJSON } from "./json.js";
import { Policy, PolicyError, Rule, parsePolicy, policyKey } from "./policy.js";

/** The protected typ of every bundle (RFC 8725 §3.11). */
export const bundleType = "rampart-pin-bundle+jws";
/** The largest bundle, in bytes of compact serialization. */
export const maxSize = 1 << 20;
/** How far in the future iat may be, in seconds. */
export const clockSkew = 300;
/** The longest lifetime exp - iat, in seconds (366 days). */
export const maxLifetime = 366 * 86400;

/** Error classes, as the vectors and Go's sentinel errors name them. */
export type BundleErrorClass = "malformed" | "unknown-key" | "bad-signature" | "expired" | "not-yet-valid" | "rollback" | "wrong-name";

export class BundleError extends Error {
  constructor(readonly kind: BundleErrorClass, message: string) {
    super(`bundle: ${kind}: ${message}`);
  }
}

type Alg = "ES256" | "ES384" | "EdDSA";

export interface TrustedKey {
  kid: string;
  alg: Alg;
  /** The public key: uncompressed point (ECDSA) or 32 bytes (Ed25519). */
  raw: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

function b64field(o: JsonObject, k: string): Uint8Array | undefined {
  const v = o.get(k);
  return typeof v === "string" ? base64urlDecode(v) : undefined;
}

/**
 * Reads trusted keys from a JWKS. The kid is computed (RFC 7638 thumbprint),
 * never taken from the set; a set whose kid disagrees is refused.
 */
export function parseKeys(jwks: string): TrustedKey[] {
  const set = parseJSON(jwks);
  const keys = set instanceof Map ? set.get("keys") : undefined;
  if (!Array.isArray(keys) || keys.length === 0) throw new Error("bundle keys: not a JWKS with at least one key");
  return keys.map((k) => {
    if (!(k instanceof Map)) throw new Error("bundle keys: a key is not an object");
    if (k.has("d")) throw new Error("bundle keys: a private key; ship public keys only");
    const kty = k.get("kty"), crv = k.get("crv");
    let key: TrustedKey;
    if (kty === "EC" && (crv === "P-256" || crv === "P-384")) {
      const size = crv === "P-256" ? 32 : 48;
      const x = b64field(k, "x"), y = b64field(k, "y");
      if (!x || !y || x.length !== size || y.length !== size) throw new Error(`bundle keys: bad ${crv} coordinates`);
      const raw = new Uint8Array(1 + 2 * size);
      raw[0] = 4;
      raw.set(x, 1);
      raw.set(y, 1 + size);
      (crv === "P-256" ? p256 : p384).Point.fromBytes(raw); // on the curve
      const tp = `{"crv":"${crv}","kty":"EC","x":"${base64urlEncode(x)}","y":"${base64urlEncode(y)}"}`;
      key = { kid: base64urlEncode(sha256(enc.encode(tp))), alg: crv === "P-256" ? "ES256" : "ES384", raw };
    } else if (kty === "OKP" && crv === "Ed25519") {
      const x = b64field(k, "x");
      if (!x || x.length !== 32) throw new Error("bundle keys: bad Ed25519 key");
      const tp = `{"crv":"Ed25519","kty":"OKP","x":"${base64urlEncode(x)}"}`;
      key = { kid: base64urlEncode(sha256(enc.encode(tp))), alg: "EdDSA", raw: x };
    } else {
      throw new Error("bundle keys: only EC P-256, P-384 and Ed25519 keys sign bundles");
    }
    const kid = k.get("kid");
    if (kid !== undefined && kid !== key.kid) throw new Error(`bundle keys: kid ${JSON.stringify(kid)} is not the key's RFC 7638 thumbprint ${key.kid}`);
    const alg = k.get("alg");
    if (alg !== undefined && alg !== key.alg) throw new Error(`bundle keys: alg ${JSON.stringify(alg)} is not the key's (${key.alg})`);
    return key;
  });
}

/** A verified bundle. */
export interface Bundle {
  name: string;
  version: number;
  /** Unix seconds. */
  iat: number;
  exp: number;
  kid: string;
  policy: Policy;
  jws: string;
}

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const P384_N = 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n;

function toBig(b: Uint8Array): bigint {
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n;
}

function checkSignature(k: TrustedKey, input: Uint8Array, sig: Uint8Array): boolean {
  if (k.alg === "EdDSA") {
    return sig.length === 64 && ed25519.verify(sig, input, k.raw, { zip215: false });
  }
  const size = k.alg === "ES256" ? 32 : 48;
  const n = k.alg === "ES256" ? P256_N : P384_N;
  if (sig.length !== 2 * size) return false;
  const r = toBig(sig.subarray(0, size)), s = toBig(sig.subarray(size));
  if (r < 1n || r >= n || s < 1n || s >= n) return false;
  // JOSE does not require low S (RFC 7518 §3.4): a high-S signature is valid.
  const curve = k.alg === "ES256" ? p256 : p384;
  try {
    return curve.verify(sig, input, k.raw, { lowS: false, prehash: true, format: "compact" });
  } catch {
    return false;
  }
}

function integer(v: JsonValue | undefined, what: string): number {
  if (!(v instanceof JsonNumber) || !v.isInteger()) throw new BundleError("malformed", `payload: ${what} must be an integer`);
  const n = Number(v.text);
  if (!Number.isSafeInteger(n)) throw new BundleError("malformed", `payload: ${what} is out of range`);
  return n;
}

const nameRE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Verifies a bundle in compact serialization at now (Unix seconds). When
 * the only problem is the time (expired, not yet valid), the error carries
 * the authentic bundle: it still sets the rollback floor.
 */
export function verifyBundle(jws: string, keys: TrustedKey[], now: number): Bundle {
  if (jws.length > maxSize) throw new BundleError("malformed", `larger than ${maxSize} bytes`);
  if (/^[ \t\r\n]*\{/.test(jws)) throw new BundleError("malformed", "JWS JSON serialization is not accepted; want the compact serialization");
  const parts = jws.split(".");
  if (parts.length !== 3) throw new BundleError("malformed", `want three parts, got ${parts.length}`);
  const decoded = parts.map((p, i) => {
    const d = base64urlDecode(p);
    if (!d) throw new BundleError("malformed", `part ${i + 1} is not canonical unpadded base64url`);
    return d;
  });
  if (decoded[1]!.length === 0) throw new BundleError("malformed", "empty payload");
  let hdr: JsonValue;
  try {
    hdr = parseJSON(dec.decode(decoded[0]!));
  } catch (e) {
    throw new BundleError("malformed", `protected header: ${(e as Error).message}`);
  }
  if (!(hdr instanceof Map)) throw new BundleError("malformed", "protected header: not a JSON object");
  for (const k of hdr.keys()) {
    if (k !== "alg" && k !== "kid" && k !== "typ") throw new BundleError("malformed", `protected header: member ${JSON.stringify(k.slice(0, 64))} is not accepted (only alg, kid and typ)`);
  }
  const h: Record<string, string> = {};
  for (const k of ["alg", "kid", "typ"]) {
    const v = hdr.get(k);
    if (typeof v !== "string" || v === "") throw new BundleError("malformed", `protected header: ${JSON.stringify(k)} must be a non-empty string`);
    h[k] = v;
  }
  const typ = h.typ!.toLowerCase();
  if (typ !== bundleType && typ !== "application/" + bundleType) throw new BundleError("malformed", `typ ${JSON.stringify(h.typ!.slice(0, 64))}: want ${bundleType}`);
  if (h.alg !== "ES256" && h.alg !== "ES384" && h.alg !== "EdDSA") throw new BundleError("bad-signature", `alg ${JSON.stringify(h.alg!.slice(0, 64))} is not accepted (only ES256, ES384 and EdDSA)`);
  const k = keys.find((x) => x.kid === h.kid);
  if (!k) throw new BundleError("unknown-key", `kid ${JSON.stringify(h.kid!.slice(0, 64))} is not a trusted key`);
  if (h.alg !== k.alg) throw new BundleError("bad-signature", `alg ${h.alg}, but key ${k.kid} signs with ${k.alg}`);
  if (!checkSignature(k, enc.encode(parts[0] + "." + parts[1]), decoded[2]!)) throw new BundleError("bad-signature", `the signature does not verify with key ${k.kid}`);

  let body: JsonValue;
  try {
    body = parseJSON(dec.decode(decoded[1]!));
  } catch (e) {
    throw new BundleError("malformed", `payload: ${(e as Error).message}`);
  }
  if (!(body instanceof Map)) throw new BundleError("malformed", "payload: not a JSON object");
  const fields = ["bundle", "version", "iat", "exp", "policy"];
  for (const f of body.keys()) if (!fields.includes(f)) throw new BundleError("malformed", `payload: unknown member ${JSON.stringify(f.slice(0, 64))}`);
  for (const f of fields) if (!body.has(f)) throw new BundleError("malformed", `payload: ${JSON.stringify(f)} is missing`);
  const name = body.get("bundle");
  if (typeof name !== "string" || !nameRE.test(name)) throw new BundleError("malformed", "payload: bad bundle name");
  const version = integer(body.get("version"), "version");
  const iat = integer(body.get("iat"), "iat");
  const exp = integer(body.get("exp"), "exp");
  if (version < 1) throw new BundleError("malformed", `payload: version ${version}: want 1 or more`);
  if (iat <= 0 || exp <= iat) throw new BundleError("malformed", "payload: want 0 < iat < exp");
  if (exp - iat > maxLifetime) throw new BundleError("malformed", "payload: a bundle may live at most 366 days");
  let policy: Policy;
  try {
    policy = parsePolicy(body.get("policy")!);
  } catch (e) {
    if (e instanceof PolicyError || e instanceof JsonError) throw new BundleError("malformed", `payload: ${e.message}`);
    throw e;
  }
  for (const r of policy.rules) {
    // No Public Suffix List here: a single label is the suffix we can know.
    if (r.includeSubdomains && !r.domain.includes(".")) throw new BundleError("malformed", `payload: rule ${r.domain}: include_subdomains on a public suffix`);
  }
  const b: Bundle = { name, version, iat, exp, kid: k.kid, policy, jws };
  if (now >= exp) throw Object.assign(new BundleError("expired", `${name} version ${version} expired`), { bundle: b });
  if (iat > now + clockSkew) throw Object.assign(new BundleError("not-yet-valid", `${name} version ${version} is issued in the future: check the clock`), { bundle: b });
  return b;
}

/** The embedded policy with the bundle's rules replacing or added to its own. */
export function effectivePolicy(embedded: Policy, b: Policy): Policy {
  const uri = b.reportURI || embedded.reportURI;
  const byName = new Map(b.rules.map((r) => [r.domain, r]));
  const used = new Set<string>();
  const rules: Rule[] = [];
  const resolve = (r: Rule): Rule => (r.reportURI === "" && uri !== "" ? { ...r, reportURI: uri } : r);
  for (const r of embedded.rules) {
    const br = byName.get(r.domain);
    if (br) {
      rules.push(resolve(br));
      used.add(r.domain);
    } else rules.push(r);
  }
  for (const r of b.rules) if (!used.has(r.domain)) rules.push(resolve(r));
  return { reportURI: uri, ctLogs: b.ctLogs.length > 0 ? b.ctLogs : embedded.ctLogs, rules };
}

function sameContent(a: Bundle, b: Bundle): boolean {
  return a.name === b.name && a.version === b.version && a.iat === b.iat && a.exp === b.exp && policyKey(a.policy) === policyKey(b.policy);
}

export type Offer = { result: "apply" | "unchanged"; version: number };

/**
 * The state of a client's bundles: the one in effect, and the rollback
 * floor (the highest version accepted, expired or not). It decides; the
 * updater fetches, persists and applies.
 */
export class BundleState {
  active?: Bundle;
  floor?: Bundle;

  constructor(readonly embedded: Policy, readonly keys: TrustedKey[], readonly name: string, readonly minVersion: number) {}

  /** The policy in effect. */
  policy(): Policy {
    return this.active ? effectivePolicy(this.embedded, this.active.policy) : this.embedded;
  }

  /** Loads the cached bundle at start-up; returns why it gives no floor, or "". */
  load(jws: string, now: number): string {
    let b: Bundle;
    try {
      b = verifyBundle(jws.trim(), this.keys, now);
    } catch (e) {
      const stale = (e as { bundle?: Bundle }).bundle;
      if (stale && stale.name === this.name && stale.version >= this.minVersion) {
        this.floor = stale; // authentic, no longer (or not yet) valid: the floor only
        return "";
      }
      return (e as Error).message;
    }
    if (b.name !== this.name || b.version < this.minVersion) return "the cached bundle is for another name or below the minimum version";
    this.active = b;
    this.floor = b;
    return "";
  }

  /** Falls back to the embedded policy when the bundle in effect has expired. */
  expire(now: number): void {
    if (this.active && now >= this.active.exp) this.active = undefined;
  }

  /** Decides on a received bundle at now; throws a BundleError when refused. */
  offer(jws: string, now: number): Offer {
    this.expire(now);
    const b = verifyBundle(jws, this.keys, now);
    if (b.name !== this.name) throw new BundleError("wrong-name", `got a bundle for ${JSON.stringify(b.name)}, want ${JSON.stringify(this.name)}`);
    if (b.version < this.minVersion) throw new BundleError("rollback", `version ${b.version} is below the minimum version ${this.minVersion}`);
    const f = this.floor;
    if (f) {
      if (b.version < f.version) throw new BundleError("rollback", `version ${b.version} is older than version ${f.version}, already accepted`);
      if (b.version === f.version) {
        if (!sameContent(b, f)) throw new BundleError("rollback", `version ${b.version} differs from the version already accepted (equivocation)`);
        if (this.active) return { result: "unchanged", version: this.active.version };
      }
    }
    effectivePolicy(this.embedded, b.policy); // combines (rules are checked on their own)
    this.active = b;
    this.floor = b;
    return { result: "apply", version: b.version };
  }
}
