package io.github.rampartsec.pin;

import java.security.cert.CertificateEncodingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** A certificate as the pin check sees it, with its digests computed once, when first needed. */
final class ChainCert {
  final X509Certificate cert;
  private String spki;
  private String fingerprint;

  ChainCert(X509Certificate cert) {
    this.cert = cert;
  }

  static List<ChainCert> of(List<X509Certificate> certs) {
    List<ChainCert> out = new ArrayList<ChainCert>(certs.size());
    for (X509Certificate c : certs) {
      out.add(new ChainCert(c));
    }
    return Collections.unmodifiableList(out);
  }

  static List<ChainCert> of(X509Certificate[] certs) {
    List<ChainCert> out = new ArrayList<ChainCert>(certs.length);
    for (X509Certificate c : certs) {
      out.add(new ChainCert(c));
    }
    return Collections.unmodifiableList(out);
  }

  /** Standard base64 of the SHA-256 of the SubjectPublicKeyInfo (the value of its SPKI pin). */
  synchronized String spki() {
    if (spki == null) {
      spki = Bytes.base64(Bytes.sha256(cert.getPublicKey().getEncoded()));
    }
    return spki;
  }

  /** Lowercase hex of the SHA-256 of the certificate (the value of its certificate pin). */
  synchronized String fingerprint() {
    if (fingerprint == null) {
      fingerprint = Bytes.hex(Bytes.sha256(der()));
    }
    return fingerprint;
  }

  byte[] der() {
    try {
      return cert.getEncoded();
    } catch (CertificateEncodingException e) {
      throw new IllegalStateException("pin: certificate cannot be encoded", e);
    }
  }

  String subject() {
    return cert.getSubjectX500Principal().getName();
  }
}
