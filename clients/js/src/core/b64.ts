// Canonical base64 and base64url, without Node's Buffer (Hermes has none).

const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function encode(b: Uint8Array, alphabet: string, pad: boolean): string {
  let out = "";
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    const chars = [alphabet[(n >> 18) & 63], alphabet[(n >> 12) & 63], alphabet[(n >> 6) & 63], alphabet[n & 63]];
    const keep = Math.min(4, Math.ceil(((b.length - i) * 8) / 6));
    out += chars.slice(0, keep).join("");
    if (pad) out += "=".repeat(4 - keep);
  }
  return out;
}

/** Decodes s strictly (canonical: every unused bit zero), or undefined. */
function decode(s: string, alphabet: string, pad: boolean): Uint8Array | undefined {
  let body = s;
  if (pad) {
    if (s.length % 4 !== 0) return undefined;
    body = s.replace(/={1,2}$/, "");
  }
  if (body.length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((body.length * 6) / 8));
  let acc = 0, bits = 0, j = 0;
  for (let i = 0; i < body.length; i++) {
    const v = alphabet.indexOf(body[i]!);
    if (v < 0) return undefined;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (acc >> bits) & 0xff;
      acc &= (1 << bits) - 1;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return undefined; // non-canonical trailing bits
  return out;
}

export const base64Encode = (b: Uint8Array) => encode(b, std, true);
export const base64Decode = (s: string) => decode(s, std, true);
export const base64urlEncode = (b: Uint8Array) => encode(b, url, false);
export const base64urlDecode = (s: string) => decode(s, url, false);
