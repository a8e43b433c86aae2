package io.github.rampartsec.pin;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.security.GeneralSecurityException;
import java.util.Random;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;
import okhttp3.ResponseBody;

/**
 * Keeps a {@link RampartPinning} on the newest signed pin bundle of the
 * control plane (Go's pin/bundle Updater): fetched over a connection pinned
 * by the embedded policy, with {@code If-None-Match}; verified strictly
 * ({@link Bundle#verify}); applied only above the rollback floor, which is
 * the highest version accepted, persisted atomically in a cache file and
 * read back at start-up; the embedded policy is the floor of the pins (a
 * bundle replaces or adds rules, never removes one), and the client falls
 * back to it when the bundle in effect expires.
 */
public final class BundleUpdater {
  /** The time between successful polls by default: 15 minutes, as Go's DefaultInterval. */
  public static final long DEFAULT_INTERVAL_MS = 15 * 60 * 1000L;
  private static final long INITIAL_BACKOFF_MS = 5000L;

  private final String url;
  private final BundleState state;
  private final RampartPinning pinning;
  private final File cacheFile;
  private final OkHttpClient fetcher;
  private final long intervalMs;
  private final long maxBackoffMs;
  private final Random jitter = new Random();
  private ScheduledExecutorService scheduler;
  private int consecutiveFailures;
  private String lastError = "";
  private long fetches;
  private long notModified;
  private long rejected;

  private BundleUpdater(Builder b) throws GeneralSecurityException, BundleException {
    this.url = b.url;
    this.pinning = b.pinning;
    this.cacheFile = b.cacheFile;
    this.intervalMs = b.intervalMs > 0 ? b.intervalMs : DEFAULT_INTERVAL_MS;
    this.maxBackoffMs = b.maxBackoffMs > 0 ? b.maxBackoffMs : this.intervalMs;
    Clock clock = b.clock != null ? b.clock : Clock.SYSTEM;
    checkControlPlane(b.embedded, b.url, null); // expiry: at each fetch
    this.state = new BundleState(b.name, b.keys, b.embedded, b.minVersion, clock, new BundleState.Listener() {
      @Override
      public void policy(Policy p) {
        try {
          pinning.setPolicy(p);
        } catch (GeneralSecurityException e) {
          throw new IllegalStateException("pin: cannot build the client configuration of a new policy", e);
        }
      }
    });
    // The fetch goes over its own client, pinned by the embedded policy alone.
    RampartPinning.Builder fb = RampartPinning.builder(b.embedded).clock(clock).reporter(b.reporter);
    if (b.platform != null) {
      fb.platformTrustManager(b.platform);
    }
    if (b.base != null) {
      fb.baseClient(b.base);
    }
    this.fetcher = fb.build().client().newBuilder().followRedirects(false).followSslRedirects(false).build();
  }

  /** A builder; every argument is required. */
  public static Builder builder(String url, String name, BundleKeys keys, Policy embedded, RampartPinning pinning) {
    return new Builder(url, name, keys, embedded, pinning);
  }

  /** Options of a BundleUpdater. */
  public static final class Builder {
    final String url;
    final String name;
    final BundleKeys keys;
    final Policy embedded;
    final RampartPinning pinning;
    File cacheFile;
    long minVersion;
    Clock clock;
    long intervalMs;
    long maxBackoffMs;
    javax.net.ssl.X509TrustManager platform;
    OkHttpClient base;
    Reporter reporter;

    Builder(String url, String name, BundleKeys keys, Policy embedded, RampartPinning pinning) {
      this.url = url;
      this.name = name;
      this.keys = keys;
      this.embedded = embedded;
      this.pinning = pinning;
    }

    /** Where the accepted bundle (the rollback floor) is kept; without it, the floor does not survive a restart. */
    public Builder cacheFile(File f) {
      this.cacheFile = f;
      return this;
    }

    /** The lowest version this client accepts, shipped with it. */
    public Builder minVersion(long v) {
      this.minVersion = v;
      return this;
    }

    public Builder clock(Clock c) {
      this.clock = c;
      return this;
    }

    /** The time between successful polls; 15 minutes by default. */
    public Builder interval(long ms) {
      this.intervalMs = ms;
      return this;
    }

    /** The longest wait after failures (which starts at 5 s and doubles); the interval by default. */
    public Builder maxBackoff(long ms) {
      this.maxBackoffMs = ms;
      return this;
    }

    /** The platform trust manager of the fetch connection (as RampartPinning.Builder's). */
    public Builder platformTrustManager(javax.net.ssl.X509TrustManager tm) {
      this.platform = tm;
      return this;
    }

    /** The client whose settings the fetch client starts from. */
    public Builder baseClient(OkHttpClient c) {
      this.base = c;
      return this;
    }

    /** Receives pin failures of the fetch connection. */
    public Builder reporter(Reporter r) {
      this.reporter = r;
      return this;
    }

    public BundleUpdater build() throws GeneralSecurityException, BundleException {
      return new BundleUpdater(this);
    }
  }

  /** The control plane URL must be https, without credentials, its host pinned in enforce mode by the embedded policy and (when now is given) not expired. */
  static void checkControlPlane(Policy embedded, String url, Long now) throws BundleException {
    Hosts.URL u;
    try {
      u = Hosts.parseURL(url);
    } catch (Hosts.URLException e) {
      throw new BundleException(BundleException.Code.CONTROL_PLANE_NOT_PINNED, e.getMessage());
    }
    if (!u.scheme.equals("https") || u.userinfo) {
      throw new BundleException(BundleException.Code.CONTROL_PLANE_NOT_PINNED, "the bundle URL is not an https URL without credentials");
    }
    Domain d = embedded.match(u.hostname);
    if (d == null) {
      throw new BundleException(BundleException.Code.CONTROL_PLANE_NOT_PINNED, "no rule for " + u.hostname);
    }
    if (d.mode != Domain.Mode.ENFORCE) {
      throw new BundleException(BundleException.Code.CONTROL_PLANE_NOT_PINNED, "the rule for " + u.hostname + " is " + d.mode);
    }
    if (now != null && d.expired(now)) {
      throw new BundleException(BundleException.Code.CONTROL_PLANE_NOT_PINNED, "the embedded rule for " + u.hostname
          + " expired after " + d.expires + ", so the connection would get CA validation only; not fetching (ship the client with a renewed rule)");
    }
  }

  /**
   * Reads the cache file and applies the bundle in it when it is valid; an
   * authentic expired one still sets the floor. Returns the error that made
   * the cache give no floor, or null (none, or no cache file).
   */
  public synchronized Exception load() {
    if (cacheFile == null || !cacheFile.exists()) {
      return null;
    }
    String text;
    try {
      text = readLimited(new FileInputStream(cacheFile));
    } catch (IOException e) {
      state.cacheError = "bundle: cache " + cacheFile + ": " + e.getMessage();
      return e;
    }
    return state.loadCache(text);
  }

  /**
   * Verifies a bundle pushed to the client (a push message, a file) and
   * applies it: true when it took effect, false when it is the bundle in
   * effect again. The accepted bundle is written to the cache file.
   */
  public synchronized boolean apply(String jws) throws BundleException, IOException {
    try {
      boolean changed = state.offer(jws.trim(), "push", "");
      if (changed) {
        writeCache(jws.trim());
      }
      return changed;
    } catch (BundleException e) {
      rejected++;
      throw e;
    }
  }

  /**
   * Fetches the bundle once, with If-None-Match, and applies it. Returns
   * true when the policy changed. A refused bundle throws BundleException
   * with its class; a failed fetch throws code FETCH.
   */
  public synchronized boolean update() throws BundleException, IOException {
    long now = state.clock.now();
    checkControlPlane(state.embedded, url, now);
    state.expire(now);
    Request.Builder rb = new Request.Builder().url(url).header("Accept", "application/jose");
    if (!state.etag().isEmpty() && state.active() != null) {
      rb.header("If-None-Match", state.etag());
    }
    fetches++;
    Response res;
    try {
      res = fetcher.newCall(rb.build()).execute();
    } catch (IOException e) {
      lastError = e.getMessage();
      throw new BundleException(BundleException.Code.FETCH, url + ": " + e.getMessage(), null, e);
    }
    try {
      if (res.code() == 304) {
        notModified++;
        return false;
      }
      if (res.code() != 200) {
        throw new BundleException(BundleException.Code.FETCH, url + ": HTTP " + res.code());
      }
      ResponseBody body = res.body();
      String text = body == null ? "" : readLimited(body.byteStream());
      String etag = res.header("ETag", "");
      boolean changed;
      try {
        changed = state.offer(text.trim(), "network", etag);
      } catch (BundleException e) {
        rejected++;
        lastError = e.getMessage();
        throw e;
      }
      if (changed) {
        writeCache(text.trim());
      }
      lastError = "";
      return changed;
    } finally {
      res.close();
    }
  }

  private static String readLimited(InputStream in) throws IOException {
    // One byte past the limit is enough to refuse an oversized bundle.
    Reader r = new InputStreamReader(in, Bytes.UTF8);
    try {
      StringBuilder s = new StringBuilder();
      char[] buf = new char[8192];
      int n;
      while ((n = r.read(buf)) > 0) {
        s.append(buf, 0, n);
        if (s.length() > Bundle.MAX_SIZE + 1) {
          break;
        }
      }
      return s.toString();
    } finally {
      r.close();
    }
  }

  /** Writes the accepted bundle atomically: a temporary file in the same directory, synced, then renamed over the cache. */
  private void writeCache(String jws) throws IOException {
    if (cacheFile == null) {
      return;
    }
    File dir = cacheFile.getAbsoluteFile().getParentFile();
    File tmp = File.createTempFile(".rampart-bundle-", ".tmp", dir);
    boolean done = false;
    try {
      FileOutputStream out = new FileOutputStream(tmp);
      try {
        out.write(jws.getBytes(Bytes.UTF8));
        out.getFD().sync();
      } finally {
        out.close();
      }
      if (!tmp.renameTo(cacheFile)) {
        throw new IOException("bundle: cannot rename " + tmp + " to " + cacheFile);
      }
      done = true;
    } finally {
      if (!done) {
        tmp.delete();
      }
    }
  }

  /** Polls every interval on a background thread, with backoff (5 s doubling, ±20%) after failures. */
  public synchronized void start() {
    if (scheduler != null) {
      return;
    }
    scheduler = Executors.newSingleThreadScheduledExecutor(new ThreadFactory() {
      @Override
      public Thread newThread(Runnable r) {
        Thread t = new Thread(r, "rampart-pin-bundle-updater");
        t.setDaemon(true);
        return t;
      }
    });
    schedule(0);
  }

  private void schedule(long delay) {
    final ScheduledExecutorService s = scheduler;
    if (s == null) {
      return;
    }
    s.schedule(new Runnable() {
      @Override
      public void run() {
        long next;
        try {
          update();
          consecutiveFailures = 0;
          next = intervalMs;
        } catch (Exception e) {
          consecutiveFailures++;
          lastError = e.getMessage();
          long d = INITIAL_BACKOFF_MS << Math.min(consecutiveFailures - 1, 20);
          next = Math.min(d, maxBackoffMs);
        }
        next = (long) (next * (0.8 + 0.4 * jitter.nextDouble()));
        synchronized (BundleUpdater.this) {
          schedule(next);
        }
      }
    }, delay, TimeUnit.MILLISECONDS);
  }

  /** Stops polling. */
  public synchronized void close() {
    if (scheduler != null) {
      scheduler.shutdownNow();
      scheduler = null;
    }
  }

  /** The bundle version in effect; 0 when the embedded policy applies alone. */
  public synchronized long version() {
    Bundle b = state.active();
    return b == null ? 0 : b.version;
  }

  /** Where the policy in effect came from: embedded, cache, network or push. */
  public synchronized String source() {
    return state.source();
  }

  /** The effective policy now in force. */
  public synchronized Policy policy() {
    return state.current();
  }

  /** Bundles applied from the network or pushed (not from the cache). */
  public synchronized long updates() {
    return state.updates;
  }

  public synchronized long rejected() {
    return rejected;
  }

  public synchronized long fetches() {
    return fetches;
  }

  public synchronized long notModified() {
    return notModified;
  }

  /** Why the cache gave no floor at start-up; "" for none. */
  public synchronized String cacheError() {
    return state.cacheError;
  }

  public synchronized String lastError() {
    return lastError;
  }
}
