package io.github.rampartsec.pin;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.net.Socket;
import java.nio.file.Files;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import okhttp3.Interceptor;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;
import org.junit.Assume;
import org.junit.BeforeClass;
import org.junit.FixMethodOrder;
import org.junit.Test;
import org.junit.runners.MethodSorters;

/**
 * The six integration scenarios every client runs, against the live harness
 * of internal/testing/clientharness (its configuration file is named by
 * $RAMPART_HARNESS; the Go test TestAndroidClient sets it): the real
 * control plane, the pinned server, the rogue-CA server, the appended-chain
 * server and the bundle publisher on loopback.
 */
@FixMethodOrder(MethodSorters.NAME_ASCENDING)
public class HarnessTest {
  private static final String API = "api.rampart.example";
  private static Map<String, Object> h;
  private static Map<String, Object> pins;
  private static javax.net.ssl.X509TrustManager trust; // the harness roots as the platform trust store
  private static Policy embedded;
  private static BundleKeys keys;
  private static Reports reports;
  private static File cache;
  private static RampartPinning pinning;
  private static BundleUpdater updater;
  private static OkHttpClient plain = new OkHttpClient();
  private static final List<Socket> sockets = new ArrayList<Socket>();
  private static long v1;

  private static String pin(String name) {
    return (String) pins.get(name);
  }

  /** Records the socket of every request, to tell a reused connection from a new one. */
  private static final Interceptor SOCKETS =
      new Interceptor() {
        @Override
        public Response intercept(Chain chain) throws IOException {
          synchronized (sockets) {
            sockets.add(chain.connection().socket());
          }
          return chain.proceed(chain.request());
        }
      };

  private static OkHttpClient base() {
    return new OkHttpClient.Builder().dns(TestSupport.LOOPBACK).addNetworkInterceptor(SOCKETS).build();
  }

  private static RampartPinning newPinning(Policy p, Reporter r) throws Exception {
    return RampartPinning.builder(p).platformTrustManager(trust).reporter(r).baseClient(base()).build();
  }

  private static BundleUpdater newUpdater(RampartPinning p, String url) throws Exception {
    return BundleUpdater.builder(url, (String) h.get("bundle_name"), keys, embedded, p)
        .cacheFile(cache).platformTrustManager(trust).baseClient(base()).build();
  }

  @BeforeClass
  public static void start() throws Exception {
    String file = TestSupport.env("RAMPART_HARNESS");
    Assume.assumeTrue("RAMPART_HARNESS is not set: these tests need the live harness "
        + "(go test ./internal/testing/clientharness -run TestAndroidClient sets it)", !file.isEmpty());
    h = Json.parseObject(TestSupport.read(new File(file)));
    pins = TestSupport.obj(h.get("pins"));
    List<X509Certificate> roots = TestSupport.certs((String) h.get("roots_pem"));
    trust = TestSupport.trust(roots);
    embedded = Policy.fromJSON(h.get("embedded_policy"), "");
    keys = BundleKeys.fromJSON(h.get("bundle_keys"));
    // Reports go to the control plane over a client pinned by the embedded policy.
    reports = new Reports(Reports.okHttpSender(newPinning(embedded, null).client()), 0, null, null);
    cache = new File(Files.createTempDirectory("rampart-harness-").toFile(), "bundle.jws");
    pinning = newPinning(embedded, reports);
    updater = newUpdater(pinning, (String) h.get("bundle_url"));
    assertEquals(null, updater.load());
  }

  private static String[] get(OkHttpClient c, String url) throws IOException {
    Response r = c.newCall(new Request.Builder().url(url).build()).execute();
    try {
      return new String[] {Integer.toString(r.code()), r.body().string()};
    } finally {
      r.close();
    }
  }

  private static Exception refusal(OkHttpClient c, String url) {
    try {
      String[] r = get(c, url);
      throw new AssertionError("want a refusal of " + url + ", got " + r[0] + " " + r[1]);
    } catch (IOException e) {
      return e;
    }
  }

  private static PinMismatchException mismatch(OkHttpClient c, String url) {
    Exception e = refusal(c, url);
    PinMismatchException pm = TestSupport.cause(e, PinMismatchException.class);
    assertTrue("want a pin mismatch, got " + TestSupport.causes(e), pm != null);
    return pm;
  }

  private static long publish(String path, Object policy, long version) throws Exception {
    Map<String, Object> body = new LinkedHashMap<String, Object>();
    body.put("policy", policy);
    body.put("version", new Json.Number(Long.toString(version)));
    Request req = new Request.Builder().url(h.get("publisher_url") + path)
        .post(RequestBody.create(MediaType.parse("application/json"), Json.write(body))).build();
    Response r = plain.newCall(req).execute();
    try {
      String text = r.body().string();
      assertEquals(path + ": " + text, 201, r.code());
      return ((Json.Number) Json.parseObject(text).get("version")).integer().longValue();
    } finally {
      r.close();
    }
  }

  private static Object rule(String mode, String... p) throws Exception {
    StringBuilder s = new StringBuilder("{\"version\":1,\"domains\":[{\"domain\":\"" + API + "\"");
    if (mode != null) {
      s.append(",\"mode\":\"").append(mode).append('"');
    }
    s.append(",\"pins\":[");
    for (int i = 0; i < p.length; i++) {
      s.append(i == 0 ? "" : ",").append(Json.quote(p[i]));
    }
    return Json.parse(s.append("]}]}").toString());
  }

  private static void waitReport(String mode) throws Exception {
    assertTrue("reports flushed", reports.flush(10000));
    long deadline = System.currentTimeMillis() + 10000;
    String last = "";
    while (System.currentTimeMillis() < deadline) {
      Response r = plain.newCall(new Request.Builder().url(h.get("publisher_url") + "/reports?domain=" + API).build()).execute();
      last = r.body().string();
      r.close();
      Object groups = Json.parseObject(last).get("groups");
      if (groups instanceof List) {
        for (Object g : (List<?>) groups) {
          Map<String, Object> m = TestSupport.obj(g);
          if (API.equals(m.get("hostname")) && mode.equals(m.get("mode")) && "pin-mismatch".equals(m.get("reason"))) {
            return;
          }
        }
      }
      Thread.sleep(100);
    }
    fail("no " + mode + " pin-mismatch report for " + API + " in the control plane after 10 s: " + last
        + " (sent " + reports.sent() + ", failed " + reports.failed() + ")");
  }

  @Test
  public void t1RogueChainRefusedNamingItsPins() throws Exception {
    PinMismatchException e = mismatch(pinning.client(), (String) h.get("rogue_url"));
    for (String k : new String[] {"rogue_leaf", "rogue_int", "rogue_root"}) {
      assertTrue("the error names " + k + " (" + pin(k) + "):\n" + e.getMessage(), e.getMessage().contains(pin(k)));
    }
    System.out.println("harness scenario 1 passed: rogue chain refused, naming its pins");
  }

  @Test
  public void t2AppendedChainRefusedEvenPinnedOnTheRealCA() throws Exception {
    RampartPinning p = newPinning(Policy.fromJSON(rule(null, pin("legit_int"), pin("backup")), ""), null);
    mismatch(p.client(), (String) h.get("appended_url"));
    String[] ok = get(p.client(), (String) h.get("pinned_url"));
    assertEquals("the same pins accept the real chain", "200 pinned", ok[0] + " " + ok[1]);
    System.out.println("harness scenario 2 passed: appended chain refused");
  }

  @Test
  public void t3ReportReachesTheControlPlane() throws Exception {
    waitReport("enforce");
    assertTrue(reports.sent() >= 1);
    System.out.println("harness scenario 3 passed: report in the control plane's data");
  }

  @Test
  public void t4PublishedBundleSwitchesPinsWithoutRestart() throws Exception {
    String pinned = (String) h.get("pinned_url");
    OkHttpClient old = pinning.client();
    synchronized (sockets) {
      sockets.clear();
    }
    assertEquals("200 pinned", String.join(" ", get(old, pinned)));
    assertEquals("200 pinned", String.join(" ", get(old, pinned)));
    Socket pooled;
    synchronized (sockets) {
      assertEquals(2, sockets.size());
      assertTrue("the second request reuses the pooled connection", sockets.get(0) == sockets.get(1));
      pooled = sockets.get(0);
    }
    v1 = publish("/publish", rule(null, pin("rogue_leaf"), pin("backup")), 0);
    assertTrue("the policy changed", updater.update());
    assertEquals(v1, updater.version());
    assertEquals("network", updater.source());
    long notModified = updater.notModified();
    assertTrue("the same bundle again changes nothing", !updater.update());
    assertEquals("the second poll sent If-None-Match and got 304", notModified + 1, updater.notModified());
    assertTrue("the pooled connection made under the old pins is closed", pooled.isClosed());
    assertNotSame("a new client configuration after the policy change", old, pinning.client());
    for (OkHttpClient c : new OkHttpClient[] {pinning.client(), old}) {
      mismatch(c, pinned);
    }
    assertEquals("200 rogue", String.join(" ", get(pinning.client(), (String) h.get("rogue_url"))));
    System.out.println("harness scenario 4 passed: bundle " + v1 + " switched the pins; old pooled connection closed");
  }

  @Test
  public void t5RollbackRefusedAfterRestart() throws Exception {
    assertTrue("scenario 4 published a version", v1 > 1);
    RampartPinning p = newPinning(embedded, null);
    BundleUpdater restarted = newUpdater(p, (String) h.get("replay_bundle_url"));
    assertEquals(null, restarted.load());
    assertEquals("the cache file brings back the accepted version", v1, restarted.version());
    assertEquals("cache", restarted.source());
    publish("/replay", h.get("embedded_policy"), v1 - 1);
    try {
      restarted.update();
      fail("want a rollback refusal");
    } catch (BundleException e) {
      assertEquals(e.getMessage(), BundleException.Code.ROLLBACK, e.code());
    }
    assertEquals(v1, restarted.version());
    List<String> got = new ArrayList<String>();
    for (Pin x : p.policy().match(API).pins()) {
      got.add(x.toString());
    }
    assertEquals("the policy in effect is still version N's", pin("rogue_leaf") + "," + pin("backup"), String.join(",", got));
    System.out.println("harness scenario 5 passed: rollback to " + (v1 - 1) + " refused after a restart");
  }

  @Test
  public void t6ReportOnlyLetsTheRequestThroughAndReports() throws Exception {
    publish("/publish", rule("report-only", pin("backup")), 0);
    assertTrue(updater.update());
    assertEquals(Domain.Mode.REPORT_ONLY, pinning.policy().match(API).mode());
    assertEquals("200 rogue", String.join(" ", get(pinning.client(), (String) h.get("rogue_url"))));
    waitReport("report-only");
    System.out.println("harness scenario 6 passed: report-only let the request through and reported");
  }
}
