package io.github.rampartsec.pin;

import java.security.cert.CertificateEncodingException;
import java.security.cert.X509Certificate;
import java.util.Arrays;

/**
 * A pin: {@code sha256/<base64>}, the SHA-256 of a DER SubjectPublicKeyInfo
 * (RFC 7469 §2.4), or {@code cert-sha256:<hex>}, the SHA-256 of a whole DER
 * certificate, with the rules of the Go {@code pin} package. Immutable; two
 * pins are equal when they are the same kind and digest.
 */
public final class Pin {
  /** What a pin is the digest of. */
  public enum Kind {
    /** The certificate's SubjectPublicKeyInfo (the key). */
    SPKI,
    /** The whole certificate. */
    CERT
  }

  private static final String SPKI_PREFIX = "sha256/";
  private static final String CERT_PREFIX = "cert-sha256:";
  private static final int SPKI_LEN = 44;

  private final Kind kind;
  private final byte[] digest;
  private final String value;

  private Pin(Kind kind, byte[] digest) {
    this.kind = kind;
    this.digest = digest.clone();
    this.value = kind == Kind.SPKI ? Bytes.base64(digest) : Bytes.hex(digest);
  }

  /** The pin of a 32-byte digest. */
  public static Pin ofDigest(Kind kind, byte[] digest) {
    if (digest.length != 32) {
      throw new IllegalArgumentException("pin: a digest is 32 bytes");
    }
    return new Pin(kind, digest);
  }

  /** The SPKI pin of a certificate's public key. */
  public static Pin spki(X509Certificate c) {
    return new Pin(Kind.SPKI, Bytes.sha256(c.getPublicKey().getEncoded()));
  }

  /** The certificate pin (fingerprint) of a certificate. */
  public static Pin fingerprint(X509Certificate c) {
    try {
      return new Pin(Kind.CERT, Bytes.sha256(c.getEncoded()));
    } catch (CertificateEncodingException e) {
      throw new IllegalArgumentException("pin: certificate cannot be encoded", e);
    }
  }

  public Kind kind() {
    return kind;
  }

  /** The 32-byte digest (a copy). */
  public byte[] digest() {
    return digest.clone();
  }

  /** The digest as compared: standard base64 for SPKI pins, lowercase hex for certificate pins. */
  String value() {
    return value;
  }

  /** The standard base64 of the digest (HPKP's pin-sha256). */
  public String base64() {
    return Bytes.base64(digest);
  }

  /** The canonical text: {@code sha256/<base64>} or {@code cert-sha256:<lowercase hex>}. */
  @Override
  public String toString() {
    return (kind == Kind.SPKI ? SPKI_PREFIX : CERT_PREFIX) + value;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Pin && ((Pin) o).kind == kind && Arrays.equals(((Pin) o).digest, digest);
  }

  @Override
  public int hashCode() {
    return kind.hashCode() * 31 + Arrays.hashCode(digest);
  }

  /** Why a pin did not parse. */
  public static final class ParseException extends Exception {
    private static final long serialVersionUID = 1L;

    /** pin.ErrPrefix, ErrEncoding or ErrLength of the Go package. */
    public enum Reason {
      PREFIX,
      ENCODING,
      LENGTH
    }

    private final Reason reason;

    ParseException(String input, Reason reason, String detail) {
      super("pin: invalid pin " + Json.quote(input.length() > 100 ? input.substring(0, 100) + "..." : input) + ": " + detail);
      this.reason = reason;
    }

    public Reason reason() {
      return reason;
    }
  }

  private static final String MSG_PREFIX = "unknown pin prefix (want \"sha256/<base64>\" or \"cert-sha256:<hex>\")";
  private static final String MSG_ENCODING = "digest is not validly encoded";
  private static final String MSG_LENGTH = "digest is not 32 bytes (SHA-256)";

  /** Parses either text form. */
  public static Pin parse(String s) throws ParseException {
    if (s.startsWith(SPKI_PREFIX)) {
      return parseSPKI(s);
    }
    if (s.startsWith(CERT_PREFIX)) {
      return parseCert(s);
    }
    throw new ParseException(s, ParseException.Reason.PREFIX, MSG_PREFIX);
  }

  private static boolean isHexDigest(String s) {
    int colons = 0;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == ':') {
        colons++;
      } else if (Character.digit(c, 16) < 0 || c > 'f') {
        return false;
      }
    }
    return (s.length() == 64 && colons == 0) || (s.length() == 95 && colons == 31);
  }

  private static Pin parseSPKI(String s) throws ParseException {
    String body = s.substring(SPKI_PREFIX.length());
    if (body.indexOf('\r') >= 0 || body.indexOf('\n') >= 0) {
      throw new ParseException(s, ParseException.Reason.ENCODING, MSG_ENCODING + ": contains a line break");
    }
    byte[] raw = Bytes.unbase64(body);
    if (raw != null && raw.length == 32) {
      return new Pin(Kind.SPKI, raw);
    }
    ParseException.Reason r = raw != null ? ParseException.Reason.LENGTH : ParseException.Reason.ENCODING;
    String msg = raw != null ? MSG_LENGTH : MSG_ENCODING;
    if (isHexDigest(body)) {
      throw new ParseException(s, r, msg + ": looks like a hex SHA-256; a certificate fingerprint is written cert-sha256:<hex>");
    }
    if (body.length() != SPKI_LEN) {
      throw new ParseException(s, r, msg + ": " + body.length() + " characters after sha256/, where a pin has " + SPKI_LEN
          + " characters (the base64 of 32 bytes, ending in =): truncated or mistyped?");
    }
    if (raw == null) {
      throw new ParseException(s, r, msg + ": not canonical standard base64");
    }
    throw new ParseException(s, r, msg + ": got " + raw.length + " bytes");
  }

  private static Pin parseCert(String s) throws ParseException {
    String body = s.substring(CERT_PREFIX.length());
    if (body.indexOf(':') >= 0) {
      // openssl's "AB:CD:EF" form: a colon after every byte but the last.
      if (body.length() % 3 != 2) {
        throw new ParseException(s, ParseException.Reason.ENCODING, MSG_ENCODING + ": misplaced colon");
      }
      StringBuilder out = new StringBuilder();
      for (int i = 0; i < body.length(); i += 3) {
        if (i + 2 < body.length() && body.charAt(i + 2) != ':') {
          throw new ParseException(s, ParseException.Reason.ENCODING, MSG_ENCODING + ": misplaced colon");
        }
        out.append(body, i, i + 2);
      }
      body = out.toString();
    }
    byte[] raw = Bytes.unhex(body);
    if (raw == null) {
      throw new ParseException(s, ParseException.Reason.ENCODING, MSG_ENCODING + ": invalid hex");
    }
    if (raw.length != 32) {
      throw new ParseException(s, ParseException.Reason.LENGTH, MSG_LENGTH + ": got " + raw.length + " bytes");
    }
    return new Pin(Kind.CERT, raw);
  }
}
