// Just enough DER to read what pinning needs from a certificate: the exact
// bytes of its SubjectPublicKeyInfo (pins are the SHA-256 of those bytes, as
// sent, never re-encoded) and its subject, for error messages.

import { toHex, utf8Decode } from "./bytes.js";

export class DERError extends Error {}

interface TLV {
  tag: number;
  /** Start of the whole element (tag byte). */
  start: number;
  /** Start and end of the contents. */
  body: number;
  end: number;
}

function readTLV(b: Uint8Array, at: number, limit: number): TLV {
  if (at + 2 > limit) throw new DERError("truncated DER");
  const tag = b[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DERError("high tag numbers are not used in certificates");
  let len = b[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DERError("unsupported DER length");
    if (body + n > limit) throw new DERError("truncated DER");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[body + i]!;
    body += n;
    if (len < 0x80 || (n > 1 && b[at + 2] === 0)) throw new DERError("non-minimal DER length");
  }
  const end = body + len;
  if (end > limit) throw new DERError("truncated DER");
  return { tag, start: at, body, end };
}

function children(b: Uint8Array, parent: TLV): TLV[] {
  const out: TLV[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTLV(b, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

export interface CertFields {
  /** The DER SubjectPublicKeyInfo, a view into the certificate. */
  spki: Uint8Array;
  /** The subject as Go's pkix.Name.String writes it. */
  subject: string;
}

/** Reads the SubjectPublicKeyInfo and subject of a DER certificate. */
export function parseCertificate(der: Uint8Array): CertFields {
  const cert = readTLV(der, 0, der.length);
  if (cert.tag !== 0x30 || cert.end !== der.length) throw new DERError("not a DER certificate");
  const top = children(der, cert);
  const tbs = top[0];
  if (!tbs || tbs.tag !== 0x30) throw new DERError("not a DER certificate");
  const f = children(der, tbs);
  let i = 0;
  if (f[0] && f[0].tag === 0xa0) i = 1; // [0] version
  // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
  const subject = f[i + 4];
  const spki = f[i + 5];
  if (!subject || subject.tag !== 0x30 || !spki || spki.tag !== 0x30) throw new DERError("not a DER certificate");
  return { spki: der.subarray(spki.start, spki.end), subject: formatName(der, subject) };
}

// Attribute types Go's pkix.Name parses into fields, in the order
// Name.ToRDNSequence writes them.
const named: [string, string][] = [
  ["2.5.4.6", "C"],
  ["2.5.4.8", "ST"],
  ["2.5.4.7", "L"],
  ["2.5.4.9", "STREET"],
  ["2.5.4.17", "POSTALCODE"],
  ["2.5.4.10", "O"],
  ["2.5.4.11", "OU"],
  ["2.5.4.3", "CN"],
  ["2.5.4.5", "SERIALNUMBER"],
];
const namedOIDs = new Map(named);

function oid(b: Uint8Array, t: TLV): string {
  const parts: number[] = [];
  let v = 0;
  for (let i = t.body; i < t.end; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      if (parts.length === 0) {
        const first = v < 80 ? Math.floor(v / 40) : 2;
        parts.push(first, v - first * 40);
      } else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

function stringValue(b: Uint8Array, t: TLV): string | null {
  const raw = b.subarray(t.body, t.end);
  switch (t.tag) {
    case 0x0c: // UTF8String
      return utf8Decode(raw);
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x12: // NumericString
    case 0x14: // T61String, read as Latin-1 as Go does
      return String.fromCharCode(...raw);
    case 0x1e: { // BMPString
      if (raw.length % 2) return null;
      let s = "";
      for (let i = 0; i < raw.length; i += 2) s += String.fromCharCode((raw[i]! << 8) | raw[i + 1]!);
      return s;
    }
  }
  return null;
}

// RFC 4514 escaping as Go's AttributeTypeAndValue printing does it.
function escape(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (",+\"\\<>;".includes(c) || (i === 0 && (c === " " || c === "#")) || (i === s.length - 1 && c === " ")) out += "\\" + c;
    else out += c;
  }
  return out;
}

function formatName(b: Uint8Array, name: TLV): string {
  const byType = new Map<string, string[]>();
  const extra: string[] = [];
  for (const set of children(b, name)) {
    for (const atv of children(b, set)) {
      const [t, v] = children(b, atv);
      if (!t || !v || t.tag !== 0x06) continue;
      const id = oid(b, t);
      const key = namedOIDs.get(id);
      const text = stringValue(b, v);
      if (key && text !== null) {
        const list = byType.get(key) ?? [];
        list.push(text);
        byType.set(key, list);
      } else {
        extra.push(`${id}=#${toHex(b.subarray(v.start, v.end))}`);
      }
    }
  }
  const rdns: string[] = [...extra];
  for (const [, key] of named) for (const v of byType.get(key) ?? []) rdns.push(`${key}=${escape(v)}`);
  return rdns.reverse().join(",");
}
