package io.github.rampartsec.pin;

import java.net.Socket;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * A trust manager that first lets the platform validate the server's chain
 * (nothing is ever accepted that the platform refuses), then checks the
 * pins of one policy against the chain the platform verified. Built by
 * {@link RampartPinning}, one per policy generation.
 *
 * <p>It records what it checked in the handshake session, so that the
 * network interceptor can re-check a pooled connection against a newer
 * policy without trusting the served list.
 */
final class PinningTrustManager extends X509ExtendedTrustManager {
  /** The SSLSession value under which the check of a connection is recorded. */
  static final String SESSION_KEY = "io.github.rampartsec.pin.check";

  /** What the trust manager decided for one connection. */
  static final class Check {
    final long generation;
    final String host;
    final int port;
    final List<ChainCert> served;
    final List<ChainCert> verified;

    Check(long generation, String host, int port, List<ChainCert> served, List<ChainCert> verified) {
      this.generation = generation;
      this.host = host;
      this.port = port;
      this.served = served;
      this.verified = verified;
    }
  }

  /** Told of every socket checked, to close those a newer policy refuses. */
  interface Registry {
    void checked(Socket socket, Check check);
  }

  private final ChainVerifier verifier;
  private final Policy policy;
  private final long generation;
  private final Reporter reporter;
  private final Clock clock;
  private final Registry registry;

  PinningTrustManager(ChainVerifier verifier, Policy policy, long generation, Reporter reporter, Clock clock,
      Registry registry) {
    this.verifier = verifier;
    this.policy = policy;
    this.generation = generation;
    this.reporter = reporter;
    this.clock = clock;
    this.registry = registry;
  }

  Policy policy() {
    return policy;
  }

  @Override
  public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
    SSLSession s = socket instanceof SSLSocket ? ((SSLSocket) socket).getHandshakeSession() : null;
    Check c = check(chain, authType, s, socket, null);
    if (registry != null && socket != null) {
      registry.checked(socket, c);
    }
  }

  @Override
  public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
    check(chain, authType, engine == null ? null : engine.getHandshakeSession(), null, engine);
  }

  /**
   * The hostname-aware check of Android's trust managers (the method
   * {@code X509TrustManagerExtensions} and OkHttp's Android chain cleaner
   * look for): validates, checks the pins for host, and returns the
   * verified chain. Not recorded in a session (there is none here).
   */
  public List<X509Certificate> checkServerTrusted(X509Certificate[] chain, String authType, String host)
      throws CertificateException {
    if (host == null || host.isEmpty()) {
      throw new CertificateException("pin: no server host; cannot choose a pin rule");
    }
    List<X509Certificate> verified = verifier.verify(chain, authType, host, null, null);
    PinCheck.Decision d = PinCheck.evaluate(policy, host, 443, ChainCert.of(chain), ChainCert.of(verified), clock.now(), "", null);
    if (d.failure != null && reporter != null) {
      reporter.report(d.failure);
    }
    if (d.error != null) {
      throw d.error;
    }
    return verified;
  }

  /** Without a socket or engine the server name is unknown, so no rule can be chosen: refused. */
  @Override
  public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
    verifier.verify(chain, authType, null, null, null);
    throw new CertificateException(
        "pin: the pinning trust manager needs the connection's server name (use it through an SSLSocket or SSLEngine, as OkHttp does)");
  }

  private Check check(X509Certificate[] chain, String authType, SSLSession session, Socket socket, SSLEngine engine)
      throws CertificateException {
    if (session == null || session.getPeerHost() == null) {
      throw new CertificateException("pin: the handshake names no server host; cannot choose a pin rule");
    }
    String host = session.getPeerHost();
    int port = session.getPeerPort();
    // The platform's validation first: its refusal is a TLS failure, not a pin failure, and is not reported.
    List<X509Certificate> verified = verifier.verify(chain, authType, host, socket, engine);
    Check c = new Check(generation, host, port, ChainCert.of(chain), ChainCert.of(verified));
    PinCheck.Decision d = PinCheck.evaluate(policy, host, port, c.served, c.verified, clock.now(), "", null);
    if (d.failure != null && reporter != null) {
      reporter.report(d.failure);
    }
    if (d.error != null) {
      throw d.error;
    }
    session.putValue(SESSION_KEY, c);
    return c;
  }

  /** Re-validates a connection the trust manager did not see (a resumed session). */
  Check recheck(SSLSession session) throws CertificateException {
    java.security.cert.Certificate[] peer;
    try {
      peer = session.getPeerCertificates();
    } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
      throw new CertificateException("pin: the session has no peer certificates", e);
    }
    X509Certificate[] chain = new X509Certificate[peer.length];
    for (int i = 0; i < peer.length; i++) {
      chain[i] = (X509Certificate) peer[i];
    }
    return check(chain, "UNKNOWN", session, null, null);
  }

  @Override
  public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
    throw new CertificateException("pin: this trust manager checks servers only");
  }

  @Override
  public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
    throw new CertificateException("pin: this trust manager checks servers only");
  }

  @Override
  public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
    throw new CertificateException("pin: this trust manager checks servers only");
  }

  @Override
  public X509Certificate[] getAcceptedIssuers() {
    return verifier.platform().getAcceptedIssuers();
  }
}
