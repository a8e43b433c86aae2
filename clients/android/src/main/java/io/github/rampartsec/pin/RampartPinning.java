package io.github.rampartsec.pin;

import java.io.IOException;
import java.net.Socket;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.WeakHashMap;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import okhttp3.Connection;
import okhttp3.ConnectionPool;
import okhttp3.Interceptor;
import okhttp3.OkHttpClient;
import okhttp3.Response;

/**
 * Certificate pinning for OkHttp (3.12+ and 4.x) with a policy that can
 * change at run time: the entry point of the library.
 *
 * <pre>{@code
 * RampartPinning pinning = RampartPinning.builder(policy).reporter(reports).build();
 * OkHttpClient client = pinning.client();   // call again after a policy change
 * }</pre>
 *
 * <p>Every connection is validated by the platform first; the pins of the
 * policy are then matched on the chain the platform verified (see
 * {@link ChainVerifier}), never on the served list. A policy change
 * ({@link #setPolicy}, or a verified bundle through {@link BundleUpdater})
 * builds a new client configuration (trust manager, {@code SSLContext},
 * connection pool), evicts the pooled connections made under the old pins,
 * and closes live connections the new pins refuse, which fails their
 * in-flight calls. A network interceptor re-checks every request's
 * connection against the current policy, so that a connection made under an
 * older policy, or a resumed TLS session the trust manager never saw (JSSE
 * skips the trust manager on resumption), is not used against the pins in
 * force.
 */
public final class RampartPinning {
  private final ChainVerifier verifier;
  private final Reporter reporter;
  private final Clock clock;
  private final OkHttpClient base;
  private final Map<Socket, PinningTrustManager.Check> live = new WeakHashMap<Socket, PinningTrustManager.Check>();
  private volatile Generation current;
  private long generations;

  private final class Generation {
    final long id;
    final Policy policy;
    final PinningTrustManager tm;
    final SSLContext context;
    final ConnectionPool pool;
    final OkHttpClient client;

    Generation(long id, Policy policy) throws GeneralSecurityException {
      this.id = id;
      this.policy = policy;
      this.tm = new PinningTrustManager(verifier, policy, id, reporter, clock, registry);
      this.context = SSLContext.getInstance("TLS");
      context.init(null, new TrustManager[] {tm}, null);
      this.pool = new ConnectionPool();
      this.client = base.newBuilder()
          .sslSocketFactory(context.getSocketFactory(), tm)
          .connectionPool(pool)
          .addNetworkInterceptor(interceptor)
          .build();
    }
  }

  private final PinningTrustManager.Registry registry =
      new PinningTrustManager.Registry() {
        @Override
        public void checked(Socket socket, PinningTrustManager.Check check) {
          synchronized (live) {
            live.put(socket, check);
          }
        }
      };

  private RampartPinning(Builder b) throws GeneralSecurityException {
    this.verifier = b.verifier != null ? b.verifier : ChainVerifier.of(b.platform != null ? b.platform : systemTrustManager());
    this.reporter = b.reporter;
    this.clock = b.clock != null ? b.clock : Clock.SYSTEM;
    this.base = b.base != null ? b.base : new OkHttpClient();
    this.current = new Generation(++generations, b.policy);
  }

  /** A builder for a client pinned with policy. */
  public static Builder builder(Policy policy) {
    return new Builder(policy);
  }

  /** Options of a RampartPinning. */
  public static final class Builder {
    private final Policy policy;
    private Reporter reporter;
    private X509TrustManager platform;
    private ChainVerifier verifier;
    private Clock clock;
    private OkHttpClient base;

    private Builder(Policy policy) {
      if (policy == null) {
        throw new NullPointerException("policy");
      }
      this.policy = policy;
    }

    /** Receives failures (a {@link Reports} queue); none by default. */
    public Builder reporter(Reporter r) {
      this.reporter = r;
      return this;
    }

    /**
     * The platform trust manager that validates chains before the pins: by
     * default the system's ({@code TrustManagerFactory} with no key store;
     * on Android that includes the network security config).
     */
    public Builder platformTrustManager(X509TrustManager tm) {
      this.platform = tm;
      return this;
    }

    /** The clock of pin-set expiry (tests). */
    public Builder clock(Clock c) {
      this.clock = c;
      return this;
    }

    /** The client whose settings (timeouts, interceptors, dispatcher) the pinned clients start from. */
    public Builder baseClient(OkHttpClient c) {
      this.base = c;
      return this;
    }

    public RampartPinning build() throws GeneralSecurityException {
      return new RampartPinning(this);
    }
  }

  /** The system's default X509 trust manager. */
  public static X509TrustManager systemTrustManager() throws GeneralSecurityException {
    TrustManagerFactory f = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    f.init((KeyStore) null);
    for (TrustManager t : f.getTrustManagers()) {
      if (t instanceof X509TrustManager) {
        return (X509TrustManager) t;
      }
    }
    throw new GeneralSecurityException("pin: the platform has no X509TrustManager");
  }

  /** The pinned client of the policy now in force. Take it again after a policy change. */
  public OkHttpClient client() {
    return current.client;
  }

  /** The policy now in force. */
  public Policy policy() {
    return current.policy;
  }

  /** The trust manager of the policy now in force (for clients other than OkHttp). */
  public X509TrustManager trustManager() {
    return current.tm;
  }

  /**
   * Puts a new policy in force: a new client configuration; the old pool's
   * idle connections are closed, and live connections the new pins refuse
   * are closed too (their calls fail).
   */
  public void setPolicy(Policy p) throws GeneralSecurityException {
    Generation old;
    synchronized (this) {
      old = current;
      current = new Generation(++generations, p);
    }
    old.pool.evictAll();
    List<Socket> refused = new ArrayList<Socket>();
    long now = clock.now();
    synchronized (live) {
      for (Map.Entry<Socket, PinningTrustManager.Check> e : live.entrySet()) {
        Socket s = e.getKey();
        PinningTrustManager.Check c = e.getValue();
        if (!s.isClosed() && PinCheck.refuses(p, c.host, c.verified, now)) {
          refused.add(s);
        }
      }
    }
    for (Socket s : refused) {
      try {
        s.close();
      } catch (IOException ignored) {
        // closing is all we want
      }
    }
  }

  /** A pinned connection refused by the policy now in force. */
  public static final class RefusedException extends IOException {
    private static final long serialVersionUID = 1L;

    RefusedException(CertificateException cause) {
      super(cause.getMessage(), cause);
    }
  }

  private final Interceptor interceptor =
      new Interceptor() {
        @Override
        public Response intercept(Chain chain) throws IOException {
          Connection c = chain.connection();
          if (c != null) {
            recheck(c);
          }
          return chain.proceed(chain.request());
        }
      };

  private void recheck(Connection c) throws IOException {
    Socket socket = c.socket();
    if (!(socket instanceof SSLSocket)) {
      return; // plain http: nothing pinned can go over it (OkHttp connects https with TLS)
    }
    SSLSession session = ((SSLSocket) socket).getSession();
    Generation g = current;
    Object v = session.getValue(PinningTrustManager.SESSION_KEY);
    try {
      if (!(v instanceof PinningTrustManager.Check)) {
        // A session the trust manager did not check here (a resumption):
        // validate it again, with the policy now in force.
        PinningTrustManager.Check check = g.tm.recheck(session);
        registry.checked(socket, check);
        return;
      }
      PinningTrustManager.Check check = (PinningTrustManager.Check) v;
      if (check.generation != g.id && PinCheck.refuses(g.policy, check.host, check.verified, clock.now())) {
        Domain d = g.policy.match(check.host);
        throw new PinMismatchException(check.host, d, check.verified);
      }
    } catch (CertificateException e) {
      socket.close();
      throw new RefusedException(e);
    }
  }
}
