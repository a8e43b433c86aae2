package io.github.rampartsec.pin;

import java.security.cert.CertificateException;
import java.util.List;

/**
 * The pin check of one connection, as Go's verifyRule: pins are matched
 * against the verified chain only (any certificate of it); an expired pin
 * set allows and reports; report-only allows and reports; an enforced
 * mismatch refuses with an exception naming the verified chain's pins.
 */
final class PinCheck {
  private PinCheck() {}

  /** What the check decided: error set means refuse; failure set means report. */
  static final class Decision {
    final Domain rule;
    final CertificateException error;
    final Failure failure;

    Decision(Domain rule, CertificateException error, Failure failure) {
      this.rule = rule;
      this.error = error;
      this.failure = failure;
    }
  }

  private static final Decision NO_RULE = new Decision(null, null, null);

  /** The first pin of d found in the chain, leaf first; null for none. */
  static Pin match(Domain d, List<ChainCert> chain) {
    for (ChainCert c : chain) {
      for (Pin p : d.pins) {
        String v = p.kind() == Pin.Kind.SPKI ? c.spki() : c.fingerprint();
        if (p.value().equals(v)) {
          return p;
        }
      }
    }
    return null;
  }

  /**
   * Applies the rule for host to a connection, at now (ms). verified is
   * null when no verified chain is known. Pure: reporting is the caller's.
   */
  static Decision evaluate(Policy policy, String host, int port, List<ChainCert> served, List<ChainCert> verified,
      long now, String noChainDetail, Throwable noChainCause) {
    Domain d = policy.match(host);
    if (d == null) {
      return NO_RULE;
    }
    if (d.expired(now)) {
      return new Decision(d, null, new Failure(now, host, port, d, Failure.Reason.PIN_SET_EXPIRED, served, verified));
    }
    if (verified == null || verified.isEmpty()) {
      Failure f = new Failure(now, host, port, d, Failure.Reason.NO_VERIFIED_CHAIN, served, null);
      if (d.mode == Domain.Mode.REPORT_ONLY) {
        return new Decision(d, null, f);
      }
      return new Decision(d, new NoVerifiedChainException(host, noChainDetail, noChainCause), f);
    }
    if (match(d, verified) != null) {
      return new Decision(d, null, null);
    }
    Failure f = new Failure(now, host, port, d, Failure.Reason.PIN_MISMATCH, served, verified);
    if (d.mode == Domain.Mode.REPORT_ONLY) {
      return new Decision(d, null, f);
    }
    return new Decision(d, new PinMismatchException(host, d, verified), f);
  }

  /** Whether an enforcing client under policy refuses a connection (no reporting): for re-checks after a policy change. */
  static boolean refuses(Policy policy, String host, List<ChainCert> verified, long now) {
    Domain d = policy.match(host);
    if (d == null || d.mode != Domain.Mode.ENFORCE || d.expired(now)) {
      return false;
    }
    return verified == null || match(d, verified) == null;
  }
}
