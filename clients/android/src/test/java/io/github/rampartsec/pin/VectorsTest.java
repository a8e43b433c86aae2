package io.github.rampartsec.pin;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Every case of the cross-language vectors (clients/testdata/vectors, the
 * directory in $RAMPART_VECTORS): bundles through the state machine and
 * through BundleUpdater with its cache file; connections over real TLS on
 * loopback through OkHttp and RampartPinning.
 */
public class VectorsTest {
  private static File dir;
  private static Map<String, Object> bundles;
  private static Map<String, Object> pki;
  private static BundleKeys keys;
  private static Policy embedded;

  @BeforeClass
  public static void load() throws Exception {
    String d = TestSupport.env("RAMPART_VECTORS");
    dir = new File(d.isEmpty() ? "../testdata/vectors" : d);
    bundles = Json.parseObject(TestSupport.read(new File(dir, "bundles.json")));
    pki = Json.parseObject(TestSupport.read(new File(dir, "pki.json")));
    keys = BundleKeys.fromJSON(bundles.get("keys"));
    embedded = Policy.fromJSON(bundles.get("embedded_policy"), "");
  }

  private static String unsupported(Map<String, Object> c) {
    Object u = c.get("unsupported");
    if (u == null) {
      return null;
    }
    Object a = TestSupport.obj(u).get("android");
    return a == null ? null : (String) a;
  }

  private static String input(Map<String, Object> c) {
    if (c.containsKey("oversize")) {
      Map<String, Object> o = TestSupport.obj(c.get("oversize"));
      String prefix = (String) o.get("prefix");
      int length = ((Json.Number) o.get("length")).integer().intValue();
      StringBuilder s = new StringBuilder(length).append(prefix);
      while (s.length() < length) {
        s.append('A');
      }
      return s.toString();
    }
    return (String) c.get("jws");
  }

  private static String expected(Map<String, Object> c) {
    Map<String, Object> e = TestSupport.obj(c.get("expect"));
    return e.get("result").equals("refuse") ? "refuse " + e.get("error") : (String) e.get("result");
  }

  private static String effective(Policy p) {
    List<Object> ds = new ArrayList<Object>();
    for (Domain d : p.domains()) {
      ds.add(d.toJSON());
    }
    return TestSupport.canon(ds);
  }

  private static long now(Map<String, Object> c) {
    return ((Json.Number) c.get("now")).integer().longValue() * 1000;
  }

  @Test
  public void formats() {
    assertEquals("rampart-bundle-vectors/1", bundles.get("format"));
    assertEquals("rampart-pki-vectors/1", pki.get("format"));
    assertTrue(TestSupport.list(bundles.get("cases")).size() >= 40);
    assertTrue(TestSupport.list(pki.get("cases")).size() >= 15);
  }

  @Test
  public void bundleVectors() throws Exception {
    List<String> failures = new ArrayList<String>();
    int ran = 0;
    for (Object o : TestSupport.list(bundles.get("cases"))) {
      Map<String, Object> c = TestSupport.obj(o);
      String name = (String) c.get("name");
      String why = unsupported(c);
      if (why != null) {
        System.out.println("bundle vector " + name + ": skipped, unsupported by this client: " + why);
        continue;
      }
      try {
        bundleCase(c);
        ran++;
      } catch (AssertionError | Exception e) {
        failures.add(name + ": " + e);
      }
    }
    System.out.println("bundle vectors: " + ran + " passed, " + failures.size() + " failed");
    assertTrue(String.join("\n", failures), failures.isEmpty());
    assertTrue(ran >= 40);
  }

  private void bundleCase(Map<String, Object> c) throws Exception {
    final long now = now(c);
    Clock clock = new Clock() {
      @Override
      public long now() {
        return now;
      }
    };
    String name = (String) bundles.get("name");
    long min = ((Json.Number) bundles.get("min_version")).integer().longValue();
    Map<String, Object> expect = TestSupport.obj(c.get("expect"));
    String want = expected(c);
    long wantVersion = ((Json.Number) expect.get("version")).integer().longValue();
    String wantDomains = TestSupport.canon(expect.get("effective_domains"));
    String jws = input(c);
    String floor = (String) c.get("floor");

    // The state machine.
    final Policy[] seen = {null};
    BundleState st = new BundleState(name, keys, embedded, min, clock, new BundleState.Listener() {
      @Override
      public void policy(Policy p) {
        seen[0] = p;
      }
    });
    if (floor != null) {
      assertEquals("the vector's floor loads", null, st.loadCache(floor));
    }
    String got;
    try {
      got = st.offer(jws, "push", "") ? "apply" : "unchanged";
    } catch (BundleException e) {
      got = "refuse " + e.code().id();
    }
    assertEquals("result", want, got);
    assertEquals("version in effect", wantVersion, st.active() == null ? 0 : st.active().version());
    assertEquals("effective domains", wantDomains, effective(st.current()));

    // BundleUpdater: the floor from a cache file, the bundle through apply().
    File tmp = Files.createTempDirectory("rampart-vec-").toFile();
    try {
      File cache = new File(tmp, "bundle.jws");
      if (floor != null) {
        FileOutputStream out = new FileOutputStream(cache);
        out.write(floor.getBytes(Bytes.UTF8));
        out.close();
      }
      RampartPinning pinning = RampartPinning.builder(embedded).clock(clock).build();
      String url = (String) bundles.get("url");
      BundleUpdater u = BundleUpdater.builder(url, name, keys, embedded, pinning).cacheFile(cache).minVersion(min).clock(clock).build();
      assertEquals("the cached floor is read back", null, u.load());
      String via;
      try {
        u.apply(jws);
        via = u.updates() > 0 ? "apply" : "unchanged";
      } catch (BundleException e) {
        via = "refuse " + e.code().id();
      }
      assertEquals("through BundleUpdater.apply", want, via);
      assertEquals(wantVersion, u.version());
      assertEquals("the pinned client got the effective policy", wantDomains, effective(pinning.policy()));
      if (want.equals("apply")) {
        BundleUpdater u2 = BundleUpdater.builder(url, name, keys, embedded, RampartPinning.builder(embedded).clock(clock).build())
            .cacheFile(cache).minVersion(min).clock(clock).build();
        u2.load();
        assertEquals("the cache holds the accepted bundle", wantVersion, u2.version());
      }
    } finally {
      for (File f : tmp.listFiles()) {
        f.delete();
      }
      tmp.delete();
    }
  }

  @Test
  public void pkiVectors() throws Exception {
    List<String> failures = new ArrayList<String>();
    int ran = 0;
    for (Object o : TestSupport.list(pki.get("cases"))) {
      Map<String, Object> c = TestSupport.obj(o);
      String name = (String) c.get("name");
      String why = unsupported(c);
      if (why != null) {
        System.out.println("pki vector " + name + ": skipped, unsupported by this client: " + why);
        continue;
      }
      try {
        pkiCase(c);
        ran++;
      } catch (AssertionError | Exception e) {
        failures.add(name + ": " + e);
      }
    }
    System.out.println("pki vectors: " + ran + " passed, " + failures.size() + " failed");
    assertTrue(String.join("\n", failures), failures.isEmpty());
    assertTrue(ran >= 15);
  }

  private static X509Certificate cert(String name) throws Exception {
    Map<String, Object> certs = TestSupport.obj(pki.get("certificates"));
    return TestSupport.certs((String) TestSupport.obj(certs.get(name)).get("pem")).get(0);
  }

  private static List<String> spkiPins(List<Object> pems) throws Exception {
    List<String> out = new ArrayList<String>();
    for (Object p : pems) {
      out.add(Pin.spki(TestSupport.certs((String) p).get(0)).toString());
    }
    return out;
  }

  private void pkiCase(Map<String, Object> c) throws Exception {
    final long now = now(c);
    String host = (String) c.get("host");
    List<X509Certificate> served = new ArrayList<X509Certificate>();
    for (Object n : TestSupport.list(c.get("served"))) {
      served.add(cert((String) n));
    }
    List<X509Certificate> roots = new ArrayList<X509Certificate>();
    for (Object n : TestSupport.list(c.get("roots"))) {
      roots.add(cert((String) n));
    }
    Map<String, Object> certs = TestSupport.obj(pki.get("certificates"));
    String keyPEM = (String) TestSupport.obj(certs.get(TestSupport.list(c.get("served")).get(0))).get("key_pem");
    Map<String, Object> expect = TestSupport.obj(c.get("expect"));
    final List<Failure> reports = new ArrayList<Failure>();
    RampartPinning pinning = RampartPinning.builder(Policy.fromJSON(c.get("policy"), ""))
        .platformTrustManager(TestSupport.trust(roots))
        .clock(new Clock() {
          @Override
          public long now() {
            return now;
          }
        })
        .reporter(new Reporter() {
          @Override
          public synchronized void report(Failure f) {
            reports.add(f);
          }
        })
        .baseClient(new OkHttpClient.Builder().dns(TestSupport.LOOPBACK).build())
        .build();
    TestSupport.Server server = new TestSupport.Server(served, TestSupport.key(keyPEM));
    try {
      Request req = new Request.Builder().url("https://" + host + ":" + server.port() + "/").build();
      Exception err = null;
      try {
        Response res = pinning.client().newCall(req).execute();
        assertEquals(200, res.code());
        res.close();
      } catch (IOException e) {
        err = e;
      }
      PinMismatchException pm = TestSupport.cause(err, PinMismatchException.class);
      if (expect.get("accept") == Boolean.TRUE) {
        assertEquals("want the connection accepted", null, err == null ? null : TestSupport.causes(err));
      } else if ("pin".equals(expect.get("failure"))) {
        assertTrue("want a pin mismatch; got " + TestSupport.causes(err), pm != null);
        for (Object p : TestSupport.list(TestSupport.obj(expect.get("report")).get("validated-chain-pins"))) {
          assertTrue("the error names " + p + ":\n" + pm.getMessage(), pm.getMessage().contains((String) p));
        }
      } else {
        assertTrue("want the platform's validation to refuse", err != null && pm == null);
      }
      Object want = expect.get("report");
      if (want == Json.NULL || want == null) {
        assertEquals("no report", 0, reports.size());
      } else {
        assertEquals("one report", 1, reports.size());
        Map<String, Object> r = Json.parseObject(reports.get(0).reportJSON());
        Map<String, Object> w = TestSupport.obj(want);
        for (String k : new String[] {"rampart-reason", "rampart-mode", "noted-hostname", "include-subdomains",
            "effective-expiration-date", "known-pins"}) {
          assertEquals(k, TestSupport.canon(w.get(k)), TestSupport.canon(r.get(k)));
        }
        assertEquals("hostname", ((String) w.get("hostname")).toLowerCase(), ((String) r.get("hostname")).toLowerCase());
        assertEquals("served chain", TestSupport.canon(w.get("served-chain-pins")),
            TestSupport.canon(spkiPins(TestSupport.list(r.get("served-certificate-chain")))));
        assertEquals("validated chain", TestSupport.canon(w.get("validated-chain-pins")),
            TestSupport.canon(spkiPins(TestSupport.list(r.get("validated-certificate-chain")))));
        assertEquals("port", Integer.toString(server.port()), r.get("port").toString());
        assertEquals(Reports.LIBRARY_VERSION, r.get("rampart-library-version"));
      }
    } finally {
      server.close();
    }
  }
}
