package io.github.rampartsec.pin;

import java.security.cert.CertificateException;
import java.util.List;

/**
 * The refusal of an enforced host whose verified chain matches none of its
 * pins. Its message names the verified chain's pins and the pinned ones;
 * OkHttp surfaces it as the cause of an {@code SSLHandshakeException}.
 */
public final class PinMismatchException extends CertificateException {
  private static final long serialVersionUID = 1L;
  private final String host;

  PinMismatchException(String host, Domain rule, List<ChainCert> chain) {
    super(message(host, rule, chain));
    this.host = host;
  }

  public String host() {
    return host;
  }

  private static String message(String host, Domain rule, List<ChainCert> chain) {
    StringBuilder s = new StringBuilder("pin: certificate pinning failure for ").append(host);
    if (!rule.name.equals(host)) {
      s.append(" (rule ").append(rule.name).append(')');
    }
    s.append(": no pin matches the verified chain\n  verified chain:");
    boolean withCert = false;
    for (Pin p : rule.pins) {
      withCert |= p.kind() == Pin.Kind.CERT;
    }
    for (ChainCert c : chain) {
      s.append("\n    sha256/").append(c.spki()).append(": ").append(c.subject());
      if (withCert) {
        s.append("\n      cert-sha256:").append(c.fingerprint());
      }
    }
    s.append("\n  pinned:");
    for (Pin p : rule.pins) {
      s.append("\n    ").append(p);
    }
    return s.toString();
  }
}
