package io.github.rampartsec.pin;

import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** One pin validation failure, as handed to the reporter (in both modes). Immutable. */
public final class Failure {
  /** Why the pins failed, as {@code rampart-reason} of the report. */
  public enum Reason {
    PIN_MISMATCH("pin-mismatch"),
    PIN_SET_EXPIRED("pin-set-expired"),
    NO_VERIFIED_CHAIN("no-verified-chain");

    private final String text;

    Reason(String text) {
      this.text = text;
    }

    @Override
    public String toString() {
      return text;
    }
  }

  final long time;
  final String host;
  final int port;
  final Domain domain;
  final Reason reason;
  final List<ChainCert> served;
  final List<ChainCert> verified;

  Failure(long time, String host, int port, Domain domain, Reason reason, List<ChainCert> served, List<ChainCert> verified) {
    this.time = time;
    this.host = host;
    this.port = port;
    this.domain = domain;
    this.reason = reason;
    this.served = served;
    this.verified = verified == null ? Collections.<ChainCert>emptyList() : verified;
  }

  /** When it happened (ms since the epoch). */
  public long time() {
    return time;
  }

  /** The server name connected to. */
  public String host() {
    return host;
  }

  public int port() {
    return port;
  }

  /** The rule that failed. */
  public Domain domain() {
    return domain;
  }

  public Reason reason() {
    return reason;
  }

  /** The report of this failure (RFC 7469 §3 with Rampart's members), as JSON text. */
  public String reportJSON() {
    return Reports.json(this, Reports.LIBRARY_VERSION);
  }

  /**
   * The failure's identity for the 24-hour deduplication: the SHA-256 of
   * the reason, host, port, rule (name, mode, include_subdomains, expiry,
   * SPKI pins then certificate pins), served chain and verified chain, each
   * length-prefixed, as Go's Failure.Key.
   */
  public String key() {
    MessageDigest h = Bytes.sha256();
    field(h, reason.toString());
    field(h, host);
    field(h, Integer.toString(port));
    field(h, domain.name);
    field(h, domain.mode.toString());
    field(h, Boolean.toString(domain.includeSubdomains));
    field(h, domain.expiresAt == null ? "" : Times.rfc3339(domain.expiresAt));
    for (Pin.Kind kind : new Pin.Kind[] {Pin.Kind.SPKI, Pin.Kind.CERT}) {
      List<Pin> pins = new ArrayList<Pin>();
      for (Pin p : domain.pins) {
        if (p.kind() == kind) {
          pins.add(p);
        }
      }
      count(h, pins.size());
      for (Pin p : pins) {
        raw(h, p.digest());
      }
    }
    count(h, served.size());
    for (ChainCert c : served) {
      raw(h, c.der());
    }
    count(h, verified.size());
    for (ChainCert c : verified) {
      raw(h, c.der());
    }
    return Bytes.hex(h.digest());
  }

  private static void count(MessageDigest h, long n) {
    byte[] b = new byte[8];
    for (int i = 0; i < 8; i++) {
      b[i] = (byte) (n >>> (56 - 8 * i));
    }
    h.update(b);
  }

  private static void raw(MessageDigest h, byte[] b) {
    count(h, b.length);
    h.update(b);
  }

  private static void field(MessageDigest h, String s) {
    raw(h, s.getBytes(Bytes.UTF8));
  }
}
