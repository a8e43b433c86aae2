package io.github.rampartsec.pin;

import java.security.cert.CertificateException;

/** The refusal of an enforced host when no verified chain could be had to check the pins against. */
public final class NoVerifiedChainException extends CertificateException {
  private static final long serialVersionUID = 1L;

  NoVerifiedChainException(String host, String detail, Throwable cause) {
    super("pin: no verified certificate chain to check pins against for " + host
        + (detail.isEmpty() ? "" : ": " + detail), cause);
  }
}
