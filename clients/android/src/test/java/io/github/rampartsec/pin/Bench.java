package io.github.rampartsec.pin;

import java.io.File;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Benchmarks, printed in Go's benchmark format so that benchstat reads
 * them: {@code ./bench.sh > new.txt; benchstat new.txt}. Each runs for about
 * a second after a warm-up, five times (RAMPART_BENCH_COUNT to change).
 */
public final class Bench {
  private Bench() {}

  interface Body {
    void run() throws Exception;
  }

  private static volatile Object sink;

  private static void bench(String name, Body b, int count) throws Exception {
    long warm = System.nanoTime() + 500_000_000L;
    while (System.nanoTime() < warm) {
      b.run();
    }
    for (int c = 0; c < count; c++) {
      long n = 1;
      long elapsed;
      for (; ; ) {
        long start = System.nanoTime();
        for (long i = 0; i < n; i++) {
          b.run();
        }
        elapsed = System.nanoTime() - start;
        if (elapsed > 1_000_000_000L || n > 1L << 40) {
          break;
        }
        n = Math.max(n * 2, (long) (n * 1.2e9 / Math.max(elapsed, 1)));
      }
      System.out.printf(java.util.Locale.ROOT, "Benchmark%s-%d\t%d\t%.1f ns/op%n", name,
          Runtime.getRuntime().availableProcessors(), n, (double) elapsed / n);
    }
  }

  private static String findES256(BundleKeys keys) {
    for (String id : keys.ids()) {
      if (keys.get(id).alg.equals("ES256")) {
        return id;
      }
    }
    throw new IllegalStateException("no ES256 key");
  }

  public static void main(String[] args) throws Exception {
    int count = TestSupport.env("RAMPART_BENCH_COUNT").isEmpty() ? 5 : Integer.parseInt(TestSupport.env("RAMPART_BENCH_COUNT"));
    File dir = CoreTest.vectors();
    Map<String, Object> bundles = Json.parseObject(TestSupport.read(new File(dir, "bundles.json")));
    Map<String, Object> pki = Json.parseObject(TestSupport.read(new File(dir, "pki.json")));
    final BundleKeys keys = BundleKeys.fromJSON(bundles.get("keys"));
    final Map<String, String> jws = new java.util.HashMap<String, String>();
    for (Object o : TestSupport.list(bundles.get("cases"))) {
      Map<String, Object> c = TestSupport.obj(o);
      jws.put((String) c.get("name"), (String) c.get("jws"));
    }
    final long now = 1796083200000L;
    Map<String, Object> certs = TestSupport.obj(pki.get("certificates"));
    final List<X509Certificate> chain = new ArrayList<X509Certificate>();
    for (String n : new String[] {"legit-leaf", "legit-int", "legit-root"}) {
      chain.add(TestSupport.certs((String) TestSupport.obj(certs.get(n)).get("pem")).get(0));
    }
    // Pinned on the root, the last certificate: the longest walk.
    final Policy policy = Policy.parse("{\"version\":1,\"domains\":[{\"domain\":\"api.rampart.example\",\"pins\":[\""
        + Pin.spki(chain.get(2)) + "\",\"sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]}]}");
    final List<ChainCert> cached = ChainCert.of(chain);
    final List<ChainCert> served = cached.subList(0, 2);
    for (ChainCert c : cached) {
      c.spki();
    }
    bench("PinCheck", new Body() {
      @Override
      public void run() {
        PinCheck.Decision d = PinCheck.evaluate(policy, "api.rampart.example", 443, served, cached, now, "", null);
        if (d.error != null) {
          throw new IllegalStateException(d.error);
        }
        sink = d;
      }
    }, count);
    bench("PinCheckWithDigests", new Body() {
      @Override
      public void run() {
        List<ChainCert> fresh = ChainCert.of(chain);
        sink = PinCheck.evaluate(policy, "api.rampart.example", 443, fresh.subList(0, 2), fresh, now, "", null);
      }
    }, count);
    final ChainVerifier.Pkix pkix = new ChainVerifier.Pkix(TestSupport.trust(chain.subList(2, 3)));
    final X509Certificate[] sent = chain.subList(0, 2).toArray(new X509Certificate[0]);
    bench("VerifiedChainPKIX", new Body() {
      @Override
      public void run() throws Exception {
        sink = pkix.build(sent);
      }
    }, count);
    // The JCA's signature check alone, on the same bundle: what the rest of
    // Bundle.verify (parsing, policy validation) adds is the difference.
    final String es256 = jws.get("valid-es256");
    final String[] parts = es256.split("\\.");
    final BundleKeys.Key key = keys.get(findES256(keys));
    final byte[] input = (parts[0] + "." + parts[1]).getBytes(Bytes.UTF8);
    final byte[] sig = Bytes.unbase64url(parts[2]);
    bench("ECDSAVerifyP256Only", new Body() {
      @Override
      public void run() {
        if (!Bundle.verifySignature(key, input, sig)) {
          throw new IllegalStateException("does not verify");
        }
      }
    }, count);
    for (final String alg : new String[] {"es256", "es384"}) {
      bench("VerifyBundle" + alg.toUpperCase(java.util.Locale.ROOT), new Body() {
        @Override
        public void run() throws Exception {
          sink = Bundle.verify(jws.get("valid-" + alg), keys, now);
        }
      }, count);
    }
  }
}
