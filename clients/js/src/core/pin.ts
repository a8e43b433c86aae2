// Pins: "sha256/<standard base64 of 32 bytes>" (the SHA-256 of a DER
// SubjectPublicKeyInfo) and "cert-sha256:<64 hex>" (of a whole DER
// certificate), with the rules of pin/pin.go.

import { sha256 } from "@noble/hashes/sha2.js";
import { b64, fromHex, toHex } from "./bytes.js";
import { parseCertificate } from "./der.js";

export type PinKind = "spki" | "cert";

const SPKI_PREFIX = "sha256/";
const CERT_PREFIX = "cert-sha256:";
const SPKI_LEN = 44; // base64 of 32 bytes

/** Why a pin did not parse (pin.ErrPrefix, ErrEncoding, ErrLength). */
export type PinErrorKind = "prefix" | "encoding" | "length";

export class PinParseError extends Error {
  constructor(readonly input: string, readonly kind: PinErrorKind, detail: string) {
    super(`pin: invalid pin ${JSON.stringify(input.length > 100 ? input.slice(0, 100) + "..." : input)}: ${detail}`);
    this.name = "PinParseError";
  }
}

const MSG = {
  prefix: 'unknown pin prefix (want "sha256/<base64>" or "cert-sha256:<hex>")',
  encoding: "digest is not validly encoded",
  length: "digest is not 32 bytes (SHA-256)",
};

/** A pin. Two pins are the same when their `key`s are equal. */
export class Pin {
  private constructor(
    readonly kind: PinKind,
    /** The 32-byte digest. */
    readonly digest: Uint8Array,
    /** The digest as compared: base64 for SPKI pins, lowercase hex for certificate pins. */
    readonly value: string,
  ) {}

  /** "spki:<base64>" or "cert:<hex>": equal for equal pins. */
  get key(): string {
    return this.kind + ":" + this.value;
  }

  /** The canonical text: sha256/<base64> or cert-sha256:<lowercase hex>. */
  toString(): string {
    return this.kind === "spki" ? SPKI_PREFIX + this.value : CERT_PREFIX + this.value;
  }

  toJSON(): string {
    return this.toString();
  }

  /** The standard base64 of the digest (HPKP's pin-sha256, Android's <pin>). */
  base64(): string {
    return b64.encode(this.digest);
  }

  equals(o: Pin): boolean {
    return this.kind === o.kind && this.value === o.value;
  }

  static fromDigest(kind: PinKind, digest: Uint8Array): Pin {
    if (digest.length !== 32) throw new Error("pin: a digest is 32 bytes");
    const d = Uint8Array.from(digest);
    return new Pin(kind, d, kind === "spki" ? b64.encode(d) : toHex(d));
  }

  /** The SPKI pin of a DER SubjectPublicKeyInfo. */
  static fromSPKI(spkiDER: Uint8Array): Pin {
    return Pin.fromDigest("spki", sha256(spkiDER));
  }

  /** The SPKI pin of a DER certificate's public key. */
  static fromCertificate(der: Uint8Array): Pin {
    return Pin.fromSPKI(parseCertificate(der).spki);
  }

  /** The certificate pin (fingerprint) of a DER certificate. */
  static fingerprint(der: Uint8Array): Pin {
    return Pin.fromDigest("cert", sha256(der));
  }

  /** Parses either text form; throws PinParseError. */
  static parse(s: string): Pin {
    if (s.startsWith(SPKI_PREFIX)) return parseSPKI(s);
    if (s.startsWith(CERT_PREFIX)) return parseCert(s);
    throw new PinParseError(s, "prefix", MSG.prefix);
  }
}

function isHexDigest(s: string): boolean {
  if (!/^[0-9a-fA-F:]+$/.test(s)) return false;
  const colons = s.split(":").length - 1;
  return (s.length === 64 && colons === 0) || (s.length === 95 && colons === 31);
}

function parseSPKI(s: string): Pin {
  const body = s.slice(SPKI_PREFIX.length);
  if (/[\r\n]/.test(body)) throw new PinParseError(s, "encoding", `${MSG.encoding}: contains a line break`);
  const raw = b64.decode(body);
  if (raw && raw.length === 32) return Pin.fromDigest("spki", raw);
  const kind: PinErrorKind = raw ? "length" : "encoding";
  if (isHexDigest(body)) {
    throw new PinParseError(s, kind, `${MSG[kind]}: looks like a hex SHA-256; a certificate fingerprint is written cert-sha256:<hex>`);
  }
  if (body.length !== SPKI_LEN) {
    throw new PinParseError(s, kind, `${MSG[kind]}: ${body.length} characters after sha256/, where a pin has ${SPKI_LEN} characters (the base64 of 32 bytes, ending in =): truncated or mistyped?`);
  }
  if (!raw) throw new PinParseError(s, kind, `${MSG[kind]}: not canonical standard base64`);
  throw new PinParseError(s, kind, `${MSG[kind]}: got ${raw.length} bytes`);
}

function parseCert(s: string): Pin {
  let body = s.slice(CERT_PREFIX.length);
  if (body.includes(":")) {
    // openssl's "AB:CD:EF" form: a colon after every byte but the last.
    if (body.length % 3 !== 2) throw new PinParseError(s, "encoding", `${MSG.encoding}: misplaced colon`);
    let out = "";
    for (let i = 0; i < body.length; i += 3) {
      if (i + 2 < body.length && body[i + 2] !== ":") throw new PinParseError(s, "encoding", `${MSG.encoding}: misplaced colon`);
      out += body.slice(i, i + 2);
    }
    body = out;
  }
  const raw = fromHex(body);
  if (!raw) throw new PinParseError(s, "encoding", `${MSG.encoding}: invalid hex`);
  if (raw.length !== 32) throw new PinParseError(s, "length", `${MSG.length}: got ${raw.length} bytes`);
  return Pin.fromDigest("cert", raw);
}
