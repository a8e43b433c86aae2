package io.github.rampartsec.pin;

import java.io.ByteArrayOutputStream;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.security.GeneralSecurityException;
import java.security.Signature;
import java.util.Arrays;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * A verified signed pin bundle (Go's {@code pin/bundle}): a JWS in compact
 * serialization, ES256, ES384 or EdDSA, verified in exactly the Go order of
 * checks, which decides the class of a refusal.
 */
public final class Bundle {
  /** The JWS {@code typ} of a bundle. */
  public static final String TYPE = "rampart-pin-bundle+jws";
  /** The largest bundle, in bytes of compact serialization. */
  public static final int MAX_SIZE = 1 << 20;
  /** How far in the future {@code iat} may be (ms). */
  public static final long CLOCK_SKEW = 5 * 60 * 1000L;
  /** The longest validity, exp − iat, in seconds: 366 days. */
  public static final long MAX_LIFETIME = 366L * 24 * 3600;

  final String name;
  final long version;
  final long iat;
  final long exp;
  final String kid;
  final Policy policy;
  final String jws;

  private Bundle(String name, long version, long iat, long exp, String kid, Policy policy, String jws) {
    this.name = name;
    this.version = version;
    this.iat = iat;
    this.exp = exp;
    this.kid = kid;
    this.policy = policy;
    this.jws = jws;
  }

  public String name() {
    return name;
  }

  public long version() {
    return version;
  }

  /** Issue time, seconds since the epoch. */
  public long iat() {
    return iat;
  }

  /** Expiry (exclusive), seconds since the epoch. */
  public long exp() {
    return exp;
  }

  /** The RFC 7638 thumbprint of the key that signed it. */
  public String kid() {
    return kid;
  }

  /** The bundle's own policy (not combined with the embedded one). */
  public Policy policy() {
    return policy;
  }

  /** The compact serialization, as verified. */
  public String jws() {
    return jws;
  }

  /** Whether two bundles say the same thing, whatever their signature bytes. */
  boolean sameContent(Bundle o) {
    return name.equals(o.name) && version == o.version && iat == o.iat && exp == o.exp
        && policy.canonical().equals(o.policy.canonical());
  }

  private static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9._-]*");

  /** Checks a bundle name, [a-z0-9][a-z0-9._-]{0,63}; returns a message or null. */
  static String checkName(String name) {
    if (name.isEmpty() || name.length() > 64) {
      return "bundle name " + Json.quote(Json.truncate(name)) + ": want 1 to 64 characters";
    }
    if (!NAME.matcher(name).matches()) {
      return "bundle name " + Json.quote(Json.truncate(name))
          + ": want lowercase letters, digits, '.', '_' and '-', starting with a letter or digit";
    }
    return null;
  }

  static int utf8Length(String s) {
    int n = 0;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c < 0x80) {
        n++;
      } else if (c < 0x800) {
        n += 2;
      } else if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
        n += 4;
        i++;
      } else {
        n += 3;
      }
    }
    return n;
  }

  private static final String[] PART = {"protected header", "payload", "signature"};

  /**
   * Verifies a bundle at {@code now} (ms since the epoch). For EXPIRED and
   * NOT_YET_VALID the exception carries the authentic bundle (the updater
   * takes its rollback floor from an expired cache).
   */
  public static Bundle verify(String jws, BundleKeys keys, long now) throws BundleException {
    if (jws.length() > MAX_SIZE || (jws.length() > MAX_SIZE / 3 && utf8Length(jws) > MAX_SIZE)) {
      throw new BundleException(BundleException.Code.MALFORMED, "larger than " + MAX_SIZE + " bytes");
    }
    int lead = 0;
    while (lead < jws.length() && " \t\r\n".indexOf(jws.charAt(lead)) >= 0) {
      lead++;
    }
    if (jws.startsWith("{", lead)) {
      throw new BundleException(BundleException.Code.MALFORMED,
          "JWS JSON serialization is not accepted; want the compact serialization");
    }
    String[] parts = jws.split("\\.", -1);
    if (parts.length != 3) {
      throw new BundleException(BundleException.Code.MALFORMED,
          "want a JWS in compact serialization (three parts separated by dots), got " + parts.length + " parts");
    }
    byte[][] decoded = new byte[3][];
    for (int i = 0; i < 3; i++) {
      String p = parts[i];
      for (int k = 0; k < p.length(); k++) {
        char c = p.charAt(k);
        boolean ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok) {
          throw new BundleException(BundleException.Code.MALFORMED,
              PART[i] + ": invalid character " + Json.quote(String.valueOf(c)) + " in base64url");
        }
      }
      decoded[i] = Bytes.unbase64url(p);
      if (decoded[i] == null) {
        throw new BundleException(BundleException.Code.MALFORMED, PART[i] + ": not canonical base64url");
      }
    }
    if (decoded[1].length == 0) {
      throw new BundleException(BundleException.Code.MALFORMED, "empty payload");
    }
    Map<String, Object> hdr;
    try {
      hdr = decodeObject(decoded[0]);
    } catch (Json.ParseException e) {
      throw new BundleException(BundleException.Code.MALFORMED, "protected header: " + e.getMessage());
    }
    for (String k : hdr.keySet()) {
      if (!k.equals("alg") && !k.equals("kid") && !k.equals("typ")) {
        throw new BundleException(BundleException.Code.MALFORMED,
            "protected header: member " + Json.quote(Json.truncate(k)) + " is not accepted (only alg, kid and typ)");
      }
    }
    String[] h = new String[3];
    String[] names = {"alg", "kid", "typ"};
    for (int i = 0; i < 3; i++) {
      Object v = hdr.get(names[i]);
      if (v == null) {
        throw new BundleException(BundleException.Code.MALFORMED, "protected header: " + Json.quote(names[i]) + " is missing");
      }
      if (!(v instanceof String) || ((String) v).isEmpty()) {
        throw new BundleException(BundleException.Code.MALFORMED,
            "protected header: " + Json.quote(names[i]) + " must be a non-empty string");
      }
      h[i] = (String) v;
    }
    String alg = h[0];
    String kid = h[1];
    String typ = Hosts.lowerASCII(h[2]);
    if (!typ.equals(TYPE) && !typ.equals("application/" + TYPE)) {
      throw new BundleException(BundleException.Code.MALFORMED,
          "typ " + Json.quote(Json.truncate(h[2])) + ": want " + Json.quote(TYPE));
    }
    if (!alg.equals("ES256") && !alg.equals("ES384") && !alg.equals("EdDSA")) {
      throw new BundleException(BundleException.Code.BAD_SIGNATURE,
          "alg " + Json.quote(Json.truncate(alg)) + " is not accepted (only ES256, ES384 and EdDSA)");
    }
    BundleKeys.Key key = keys.get(kid);
    if (key == null) {
      StringBuilder ids = new StringBuilder();
      for (String id : keys.ids()) {
        ids.append(ids.length() == 0 ? "" : ", ").append(id);
      }
      throw new BundleException(BundleException.Code.UNKNOWN_KEY,
          "kid " + Json.quote(Json.truncate(kid)) + " is not a trusted key (trusted: " + ids + ")");
    }
    if (!alg.equals(key.alg)) {
      throw new BundleException(BundleException.Code.BAD_SIGNATURE, "alg " + alg + ", but key " + kid + " signs with " + key.alg);
    }
    if (key.publicKey == null) {
      throw new BundleException(BundleException.Code.BAD_SIGNATURE,
          "key " + kid + " is an Ed25519 key, and this platform has no Ed25519 (it needs Java 15 or Android API 33)");
    }
    byte[] input = (parts[0] + "." + parts[1]).getBytes(Bytes.UTF8);
    if (!verifySignature(key, input, decoded[2])) {
      throw new BundleException(BundleException.Code.BAD_SIGNATURE, "the signature does not verify with key " + kid);
    }
    Bundle b = decodePayload(decoded[1], kid, jws);
    if (now >= b.exp * 1000) {
      throw new BundleException(BundleException.Code.EXPIRED,
          b.name + " version " + b.version + " expired at " + Times.rfc3339(b.exp * 1000), b);
    }
    if (b.iat * 1000 > now + CLOCK_SKEW) {
      throw new BundleException(BundleException.Code.NOT_YET_VALID, b.name + " version " + b.version + " is issued at "
          + Times.rfc3339(b.iat * 1000) + ", more than 5m0s after now (" + Times.rfc3339(now) + "): check the clock", b);
    }
    return b;
  }

  private static Map<String, Object> decodeObject(byte[] b) throws Json.ParseException {
    String s;
    try {
      s = Bytes.UTF8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(b))
          .toString();
    } catch (CharacterCodingException e) {
      throw new Json.ParseException("not UTF-8");
    }
    return Json.parseObject(s);
  }

  static boolean verifySignature(BundleKeys.Key key, byte[] msg, byte[] sig) {
    try {
      if (key.alg.equals("EdDSA")) {
        if (sig.length != 64) {
          return false;
        }
        Signature v = Signature.getInstance("Ed25519");
        v.initVerify(key.publicKey);
        v.update(msg);
        return v.verify(sig);
      }
      int size = key.alg.equals("ES256") ? 32 : 48;
      // Raw R||S of exactly twice the field size (RFC 7518 §3.4), R and S in
      // [1, n-1], checked here rather than left to the provider; a high S is
      // valid (JOSE does not require low S).
      if (sig.length != 2 * size) {
        return false;
      }
      BigInteger n = key.params.getOrder();
      BigInteger r = new BigInteger(1, Arrays.copyOfRange(sig, 0, size));
      BigInteger s = new BigInteger(1, Arrays.copyOfRange(sig, size, 2 * size));
      if (r.signum() <= 0 || r.compareTo(n) >= 0 || s.signum() <= 0 || s.compareTo(n) >= 0) {
        return false;
      }
      Signature v = Signature.getInstance(size == 32 ? "SHA256withECDSA" : "SHA384withECDSA");
      v.initVerify(key.publicKey);
      v.update(msg);
      return v.verify(der(r, s));
    } catch (GeneralSecurityException e) {
      return false;
    }
  }

  /** The DER SEQUENCE { INTEGER r, INTEGER s } the JCA verifies. */
  static byte[] der(BigInteger r, BigInteger s) {
    byte[] rb = r.toByteArray();
    byte[] sb = s.toByteArray();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int len = 2 + rb.length + 2 + sb.length;
    out.write(0x30);
    if (len >= 128) {
      out.write(0x81);
    }
    out.write(len);
    out.write(0x02);
    out.write(rb.length);
    out.write(rb, 0, rb.length);
    out.write(0x02);
    out.write(sb.length);
    out.write(sb, 0, sb.length);
    return out.toByteArray();
  }

  private static final BigInteger INT64_MAX = BigInteger.valueOf(Long.MAX_VALUE);
  private static final BigInteger INT64_MIN = BigInteger.valueOf(Long.MIN_VALUE);

  private static long int64(String name, Object v) throws BundleException {
    if (!(v instanceof Json.Number)) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: " + Json.quote(name) + ": want an integer");
    }
    BigInteger n = ((Json.Number) v).integer();
    if (n == null || n.compareTo(INT64_MAX) > 0 || n.compareTo(INT64_MIN) < 0) {
      throw new BundleException(BundleException.Code.MALFORMED,
          "payload: " + Json.quote(name) + ": " + Json.truncate(v.toString()) + " is not an integer of 64 bits");
    }
    return n.longValue();
  }

  private static final String[] FIELDS = {"bundle", "version", "iat", "exp", "policy"};

  private static Bundle decodePayload(byte[] body, String kid, String jws) throws BundleException {
    Map<String, Object> m;
    try {
      m = decodeObject(body);
    } catch (Json.ParseException e) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: " + e.getMessage());
    }
    for (String k : m.keySet()) {
      if (!Arrays.asList(FIELDS).contains(k)) {
        throw new BundleException(BundleException.Code.MALFORMED,
            "payload: unknown member " + Json.quote(Json.truncate(k)) + " (want bundle, version, iat, exp and policy)");
      }
    }
    for (String f : FIELDS) {
      if (!m.containsKey(f)) {
        throw new BundleException(BundleException.Code.MALFORMED, "payload: " + Json.quote(f) + " is missing");
      }
    }
    Object name = m.get("bundle");
    if (!(name instanceof String)) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: \"bundle\": want a string");
    }
    long version = int64("version", m.get("version"));
    long iat = int64("iat", m.get("iat"));
    long exp = int64("exp", m.get("exp"));
    String nameErr = checkName((String) name);
    if (nameErr != null) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: " + nameErr);
    }
    if (version < 1) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: version " + version + ": want 1 or more");
    }
    if (iat <= 0 || exp <= iat) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: want 0 < iat < exp, got iat " + iat + ", exp " + exp);
    }
    if (exp - iat > MAX_LIFETIME) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: expiry is " + (exp - iat) / 86400
          + " days after the issue time; a bundle may live at most " + MAX_LIFETIME / 86400 + " days (MaxLifetime)");
    }
    if (exp > Long.MAX_VALUE / 1000) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: exp " + exp + ": too far in the future");
    }
    Object pv = m.get("policy");
    if (!(pv instanceof Map)) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: policy must be an object");
    }
    Policy policy;
    try {
      policy = Policy.fromJSON(pv, "");
    } catch (PolicyException e) {
      throw new BundleException(BundleException.Code.MALFORMED, "payload: " + e.getMessage());
    }
    for (Domain d : policy.domains()) {
      // Without the Public Suffix List (neither the JVM nor Android exposes
      // it), single-label names only.
      if (d.includeSubdomains && d.name.indexOf('.') < 0) {
        throw new BundleException(BundleException.Code.MALFORMED, "payload: policy: rule " + Json.truncate(d.name)
            + ": include_subdomains on a public suffix would pin every site registered under it (public-suffix)");
      }
    }
    return new Bundle((String) name, version, iat, exp, kid, policy, jws);
  }
}
