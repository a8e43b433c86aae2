// The signature primitive of verifyBundle on Node.js: node:crypto (OpenSSL)
// instead of @noble/curves, installed when this module is imported (by the
// Node updater and the package's Node entry point). core/bundle.ts keeps
// every check of the signature's form (exact length, R and S in [1, n-1])
// before it calls this; a high S verifies, as in JOSE.
import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { useSignatureCheck, type TrustedKey } from "../core/bundle.js";
import { b64url } from "../core/bytes.js";

const keyObjects = new WeakMap<TrustedKey, KeyObject>();

function keyObject(k: TrustedKey): KeyObject {
  let o = keyObjects.get(k);
  if (!o) {
    if (k.alg === "EdDSA") {
      o = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url.encode(k.publicKey) }, format: "jwk" });
    } else {
      const size = k.alg === "ES256" ? 32 : 48;
      const crv = k.alg === "ES256" ? "P-256" : "P-384";
      const x = b64url.encode(k.publicKey.subarray(1, 1 + size));
      const y = b64url.encode(k.publicKey.subarray(1 + size));
      o = createPublicKey({ key: { kty: "EC", crv, x, y }, format: "jwk" });
    }
    keyObjects.set(k, o);
  }
  return o;
}

/** node:crypto's verification of a bundle signature. */
export function nodeSignatureCheck(k: TrustedKey, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    if (k.alg === "EdDSA") return verify(null, msg, keyObject(k), sig);
    return verify(k.alg === "ES256" ? "sha256" : "sha384", msg, { key: keyObject(k), dsaEncoding: "ieee-p1363" }, sig);
  } catch {
    return false;
  }
}

useSignatureCheck(nodeSignatureCheck);
