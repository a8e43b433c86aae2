package io.github.rampartsec.pin;

import java.math.BigInteger;
import java.security.AlgorithmParameters;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.spec.ECFieldFp;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The trusted bundle signing keys, a JWK Set as {@code rampart bundle keygen}
 * writes it, indexed by RFC 7638 thumbprint (the {@code kid} bundles name).
 * Accepted: EC P-256 (ES256), EC P-384 (ES384) and OKP Ed25519 (EdDSA, which
 * verifies only where the platform has it: Java 15+, Android API 33+).
 */
public final class BundleKeys {
  /** One trusted key. */
  static final class Key {
    final String kid;
    final String alg;
    final PublicKey publicKey; // null: an Ed25519 key on a platform without Ed25519
    final ECParameterSpec params; // EC keys

    Key(String kid, String alg, PublicKey publicKey, ECParameterSpec params) {
      this.kid = kid;
      this.alg = alg;
      this.publicKey = publicKey;
      this.params = params;
    }
  }

  private final Map<String, Key> byKid = new TreeMap<String, Key>();

  private BundleKeys() {}

  /** Reads a JWK Set ({@code {"keys": [...]}}) or one JWK. */
  public static BundleKeys parse(String json) throws GeneralSecurityException {
    Object v;
    try {
      v = Json.parse(json);
    } catch (Json.ParseException e) {
      throw new GeneralSecurityException("bundle: keys: not valid JSON: " + e.getMessage());
    }
    return fromJSON(v);
  }

  static BundleKeys fromJSON(Object v) throws GeneralSecurityException {
    if (!(v instanceof Map)) {
      throw new GeneralSecurityException("bundle: keys: want a JWK Set or a JWK");
    }
    BundleKeys k = new BundleKeys();
    Object set = ((Map<?, ?>) v).get("keys");
    if (set != null) {
      if (!(set instanceof List) || ((List<?>) set).isEmpty()) {
        throw new GeneralSecurityException("bundle: keys: empty JWK Set");
      }
      for (Object j : (List<?>) set) {
        Key key = parseJWK(j);
        k.byKid.put(key.kid, key);
      }
    } else {
      Key key = parseJWK(v);
      k.byKid.put(key.kid, key);
    }
    return k;
  }

  Key get(String kid) {
    return byKid.get(kid);
  }

  /** The thumbprints of the trusted keys, sorted. */
  public List<String> ids() {
    return Collections.unmodifiableList(new ArrayList<String>(byKid.keySet()));
  }

  public int size() {
    return byKid.size();
  }

  private static final String[] PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"};
  private static final byte[] ED25519_SPKI_PREFIX = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

  private static String member(Map<?, ?> m, String name) throws GeneralSecurityException {
    Object x = m.get(name);
    if (x == null) {
      return null;
    }
    if (!(x instanceof String)) {
      throw new GeneralSecurityException("bundle: keys: JWK member " + name + " must be a string");
    }
    return (String) x;
  }

  static ECParameterSpec curve(String name) throws GeneralSecurityException {
    AlgorithmParameters p = AlgorithmParameters.getInstance("EC");
    p.init(new ECGenParameterSpec(name));
    return p.getParameterSpec(ECParameterSpec.class);
  }

  private static Key parseJWK(Object v) throws GeneralSecurityException {
    if (!(v instanceof Map)) {
      throw new GeneralSecurityException("bundle: keys: a JWK is a JSON object");
    }
    Map<?, ?> m = (Map<?, ?>) v;
    for (String p : PRIVATE_MEMBERS) {
      if (m.containsKey(p)) {
        if (p.equals("k")) {
          throw new GeneralSecurityException(
              "bundle: keys: a symmetric (oct) key cannot verify bundles; give the signing key's public key");
        }
        throw new GeneralSecurityException(
            "bundle: this is a private key; give the public key (rampart bundle keygen writes NAME.pub)");
      }
    }
    String kty = member(m, "kty");
    String crv = member(m, "crv");
    String x = member(m, "x");
    Key key;
    if ("EC".equals(kty) && ("P-256".equals(crv) || "P-384".equals(crv))) {
      int size = crv.equals("P-256") ? 32 : 48;
      String y = member(m, "y");
      byte[] xb = x == null ? null : Bytes.unbase64url(x);
      byte[] yb = y == null ? null : Bytes.unbase64url(y);
      if (xb == null || yb == null || xb.length != size || yb.length != size) {
        throw new GeneralSecurityException(
            "bundle: keys: invalid " + crv + " JWK: x and y must be " + size + " bytes of base64url");
      }
      ECParameterSpec params = curve(crv.equals("P-256") ? "secp256r1" : "secp384r1");
      BigInteger px = new BigInteger(1, xb);
      BigInteger py = new BigInteger(1, yb);
      if (!onCurve(params, px, py)) {
        throw new GeneralSecurityException("bundle: invalid ECDSA public key: not a point of " + crv);
      }
      PublicKey pub = KeyFactory.getInstance("EC").generatePublic(new ECPublicKeySpec(new ECPoint(px, py), params));
      String kid = thumbprint("{\"crv\":" + Json.quote(crv) + ",\"kty\":\"EC\",\"x\":" + Json.quote(Bytes.base64url(xb))
          + ",\"y\":" + Json.quote(Bytes.base64url(yb)) + "}");
      key = new Key(kid, size == 32 ? "ES256" : "ES384", pub, params);
    } else if ("OKP".equals(kty) && "Ed25519".equals(crv)) {
      byte[] xb = x == null ? null : Bytes.unbase64url(x);
      if (xb == null || xb.length != 32) {
        throw new GeneralSecurityException("bundle: keys: invalid Ed25519 JWK: x must be 32 bytes of base64url");
      }
      String kid = thumbprint("{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":" + Json.quote(Bytes.base64url(xb)) + "}");
      key = new Key(kid, "EdDSA", ed25519(xb), null);
    } else {
      throw new GeneralSecurityException("bundle: keys: JWK kty " + Json.quote(kty == null ? "" : kty) + " crv "
          + Json.quote(crv == null ? "" : crv) + " is not accepted (want EC P-256, EC P-384 or OKP Ed25519)");
    }
    String kid = member(m, "kid");
    if (kid != null && !kid.isEmpty() && !kid.equals(key.kid)) {
      throw new GeneralSecurityException("bundle: keys: JWK kid " + Json.quote(Json.truncate(kid))
          + " is not the key's RFC 7638 thumbprint " + Json.quote(key.kid) + ", which is what bundles name");
    }
    String alg = member(m, "alg");
    if (alg != null && !alg.isEmpty() && !alg.equals(key.alg)) {
      throw new GeneralSecurityException("bundle: keys: JWK " + key.kid + ": alg " + Json.quote(Json.truncate(alg))
          + ", but the key signs with " + key.alg);
    }
    String use = member(m, "use");
    if (use != null && !use.isEmpty() && !use.equals("sig")) {
      throw new GeneralSecurityException("bundle: keys: JWK " + key.kid + ": use " + Json.quote(Json.truncate(use)) + ": want sig");
    }
    return key;
  }

  /** The Ed25519 key, or null where the platform has no Ed25519 (before Java 15 and Android API 33). */
  private static PublicKey ed25519(byte[] x) throws GeneralSecurityException {
    byte[] spki = new byte[ED25519_SPKI_PREFIX.length + 32];
    System.arraycopy(ED25519_SPKI_PREFIX, 0, spki, 0, ED25519_SPKI_PREFIX.length);
    System.arraycopy(x, 0, spki, ED25519_SPKI_PREFIX.length, 32);
    KeyFactory f;
    try {
      f = KeyFactory.getInstance("Ed25519");
    } catch (java.security.NoSuchAlgorithmException e) {
      return null;
    }
    try {
      return f.generatePublic(new X509EncodedKeySpec(spki));
    } catch (GeneralSecurityException e) {
      throw new GeneralSecurityException("bundle: invalid Ed25519 public key", e);
    }
  }

  /** y² = x³ + ax + b (mod p), with 0 ≤ x, y < p. */
  private static boolean onCurve(ECParameterSpec s, BigInteger x, BigInteger y) {
    BigInteger p = ((ECFieldFp) s.getCurve().getField()).getP();
    if (x.compareTo(p) >= 0 || y.compareTo(p) >= 0) {
      return false;
    }
    BigInteger left = y.multiply(y).mod(p);
    BigInteger right = x.pow(3).add(s.getCurve().getA().multiply(x)).add(s.getCurve().getB()).mod(p);
    return left.equals(right);
  }

  /** RFC 7638: the base64url SHA-256 of the required members in lexicographic order, no white space. */
  private static String thumbprint(String json) {
    return Bytes.base64url(Bytes.sha256(json.getBytes(Bytes.UTF8)));
  }
}
