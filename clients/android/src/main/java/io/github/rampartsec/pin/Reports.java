package io.github.rampartsec.pin;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;

/**
 * RFC 7469 §3 failure reports with Rampart's members (Go's pin/report), and
 * their delivery: a bounded queue on one background thread, at most one
 * report per failure and report URI in 24 hours, never blocking or failing
 * the connection that failed.
 */
public final class Reports implements Reporter {
  /** The library version reports carry in {@code rampart-library-version}. */
  public static final String LIBRARY_VERSION = "android/0.1.0";

  /** Posts one report; throws when it was not accepted (not 2xx). */
  public interface Sender {
    void send(String uri, String json) throws IOException;
  }

  /** Told of delivery failures; never given report contents. */
  public interface ErrorListener {
    void failed(String uri, String host, Exception e);
  }

  private static final MediaType JSON = MediaType.parse("application/json");

  /** A sender that posts with an OkHttp client (best: the pinned client, as reports may not go to a pinned host of their own rule). */
  public static Sender okHttpSender(final OkHttpClient client) {
    return new Sender() {
      @Override
      public void send(String uri, String json) throws IOException {
        Request req = new Request.Builder()
            .url(uri)
            .header("User-Agent", "rampart-pin/" + LIBRARY_VERSION)
            .post(RequestBody.create(JSON, json))
            .build();
        Response res = client.newCall(req).execute();
        try {
          if (res.code() / 100 != 2) {
            throw new IOException("report to " + uri + ": HTTP " + res.code());
          }
        } finally {
          res.close();
        }
      }
    };
  }

  private final Sender sender;
  private final ErrorListener errors;
  private final Clock clock;
  private final DedupWindow window = new DedupWindow(24 * 3600 * 1000L, 4096);
  private final ThreadPoolExecutor executor;
  private final AtomicLong sent = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  private final AtomicLong dropped = new AtomicLong();
  private final AtomicLong duplicates = new AtomicLong();
  private final AtomicLong noURI = new AtomicLong();

  /** A queue of at most queueSize waiting reports (256 when 0). errors may be null. */
  public Reports(Sender sender, int queueSize, Clock clock, ErrorListener errors) {
    this.sender = sender;
    this.errors = errors;
    this.clock = clock == null ? Clock.SYSTEM : clock;
    BlockingQueue<Runnable> q = new ArrayBlockingQueue<Runnable>(queueSize <= 0 ? 256 : queueSize);
    this.executor = new ThreadPoolExecutor(1, 1, 30, TimeUnit.SECONDS, q, new ThreadFactory() {
      @Override
      public Thread newThread(Runnable r) {
        Thread t = new Thread(r, "rampart-pin-reports");
        t.setDaemon(true);
        return t;
      }
    });
    executor.allowCoreThreadTimeOut(true);
  }

  /** Queues the report of a failure; never blocks, never throws. */
  @Override
  public void report(final Failure f) {
    final String uri = f.domain.reportURI;
    if (uri.isEmpty()) {
      noURI.incrementAndGet();
      return;
    }
    final String key = f.key() + " " + uri;
    if (!window.first(key, clock.now())) {
      duplicates.incrementAndGet();
      return;
    }
    try {
      executor.execute(new Runnable() {
        @Override
        public void run() {
          try {
            sender.send(uri, json(f, LIBRARY_VERSION));
            sent.incrementAndGet();
          } catch (Exception e) {
            failed.incrementAndGet();
            window.forget(key); // a later identical failure may try again
            if (errors != null) {
              try {
                errors.failed(uri, f.host, e);
              } catch (RuntimeException ignored) {
                // a listener's failure is not the queue's
              }
            }
          }
        }
      });
    } catch (java.util.concurrent.RejectedExecutionException e) {
      window.forget(key);
      dropped.incrementAndGet();
    }
  }

  /** Waits up to timeoutMs until every queued report was sent or failed; true when done. */
  public boolean flush(long timeoutMs) throws InterruptedException {
    long deadline = System.nanoTime() + timeoutMs * 1000000L;
    while (executor.getQueue().size() > 0 || executor.getActiveCount() > 0) {
      if (System.nanoTime() > deadline) {
        return false;
      }
      Thread.sleep(5);
    }
    return true;
  }

  /** Stops accepting reports; queued ones are still sent. */
  public void close() {
    executor.shutdown();
  }

  public long sent() {
    return sent.get();
  }

  public long failed() {
    return failed.get();
  }

  public long dropped() {
    return dropped.get();
  }

  public long duplicates() {
    return duplicates.get();
  }

  public long withoutURI() {
    return noURI.get();
  }

  private static List<String> pems(List<ChainCert> chain) {
    List<String> out = new ArrayList<String>();
    for (ChainCert c : chain) {
      String b = Bytes.base64(c.der());
      StringBuilder s = new StringBuilder("-----BEGIN CERTIFICATE-----\n");
      for (int i = 0; i < b.length(); i += 64) {
        s.append(b, i, Math.min(b.length(), i + 64)).append('\n');
      }
      out.add(s.append("-----END CERTIFICATE-----\n").toString());
    }
    return out;
  }

  /** The report of a failure, members in the order Go writes them. */
  static String json(Failure f, String libraryVersion) {
    Domain d = f.domain;
    Map<String, Object> r = new LinkedHashMap<String, Object>();
    r.put("date-time", Times.rfc3339(f.time));
    r.put("hostname", f.host);
    r.put("port", new Json.Number(Integer.toString(f.port)));
    r.put("effective-expiration-date", d.expiresAt == null ? Json.NULL : Times.rfc3339(d.expiresAt));
    r.put("include-subdomains", d.includeSubdomains);
    r.put("noted-hostname", d.name);
    r.put("served-certificate-chain", pems(f.served));
    r.put("validated-certificate-chain", pems(f.verified));
    List<String> known = new ArrayList<String>();
    List<String> certPins = new ArrayList<String>();
    for (Pin p : d.pins) {
      if (p.kind() == Pin.Kind.SPKI) {
        known.add("pin-sha256=\"" + p.base64() + "\"");
      } else {
        certPins.add(p.toString());
      }
    }
    r.put("known-pins", known);
    r.put("rampart-mode", d.mode.toString());
    r.put("rampart-reason", f.reason.toString());
    r.put("rampart-library-version", libraryVersion);
    if (!certPins.isEmpty()) {
      r.put("rampart-known-cert-pins", certPins);
    }
    return Json.write(r);
  }

  /** Keys seen in the last ttl, at most max of them (Go's internal/util/dedup.Window). */
  static final class DedupWindow {
    private final long ttl;
    private final int max;
    private final LinkedHashMap<String, Long> seen = new LinkedHashMap<String, Long>();

    DedupWindow(long ttl, int max) {
      this.ttl = ttl;
      this.max = max;
    }

    /** True (and records key) unless key was recorded less than ttl before now. */
    synchronized boolean first(String key, long now) {
      Long at = seen.get(key);
      if (at != null && now - at < ttl) {
        return false;
      }
      seen.remove(key);
      seen.put(key, now);
      Iterator<Map.Entry<String, Long>> it = seen.entrySet().iterator();
      while (it.hasNext()) {
        Map.Entry<String, Long> e = it.next();
        if (now - e.getValue() < ttl && seen.size() <= max) {
          break;
        }
        it.remove();
      }
      return true;
    }

    synchronized void forget(String key) {
      seen.remove(key);
    }

    synchronized int size() {
      return seen.size();
    }
  }
}
