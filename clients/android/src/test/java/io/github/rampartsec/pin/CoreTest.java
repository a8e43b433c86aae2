package io.github.rampartsec.pin;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.Test;

/** The parsers and helpers, beyond what the vectors cover; and a mutation fuzz of every parser. */
public class CoreTest {
  private static void refusedJSON(String s) {
    try {
      Json.parse(s);
      fail("accepted " + s);
    } catch (Json.ParseException expected) {
      // refused
    }
  }

  @Test
  public void jsonIsStrict() throws Exception {
    // RFC 8259 §4 leaves duplicate names to the reader; a signed document
    // read two ways is how a signature check is bypassed, so they are refused.
    refusedJSON("{\"a\":1,\"a\":2}");
    refusedJSON("{\"a\":1} x");
    refusedJSON("{\"a\":1,}");
    refusedJSON("{'a':1}");
    refusedJSON("[01]");
    refusedJSON("\"\\ud800\"");
    refusedJSON("\"a\u0001\"");
    refusedJSON("/* c */ 1");
    StringBuilder deep = new StringBuilder();
    for (int i = 0; i < 200; i++) {
      deep.append('[');
    }
    refusedJSON(deep.toString());
    Map<String, Object> m = Json.parseObject("{\"n\": 12345678901234567890123, \"f\": 1.5e3, \"s\": \"\\u00e9\\ud83d\\ude00\"}");
    assertEquals("12345678901234567890123", m.get("n").toString());
    assertEquals("the number is kept as written", "1.5e3", m.get("f").toString());
    assertNull("a fraction is not an integer", ((Json.Number) m.get("f")).integer());
    assertEquals("\u00e9\ud83d\ude00", m.get("s"));
    assertEquals("{\"n\":12345678901234567890123,\"f\":1.5e3,\"s\":\"\u00e9\ud83d\ude00\"}", Json.write(m));
  }

  @Test
  public void base64IsCanonical() {
    assertEquals("AQI=", Bytes.base64(new byte[] {1, 2}));
    assertNotNull(Bytes.unbase64("AQI="));
    assertNull("unused bits set", Bytes.unbase64("AQJ="));
    assertNull("padding missing", Bytes.unbase64("AQI"));
    assertNull("url alphabet", Bytes.unbase64("-_8="));
    assertNotNull(Bytes.unbase64url("AQI"));
    assertNull("padding in base64url", Bytes.unbase64url("AQI="));
    assertNull("unused bits set", Bytes.unbase64url("AQJ"));
    assertNull(Bytes.unbase64url("A"));
  }

  @Test
  public void hostsAsGo() {
    assertEquals("2001:db8::1:0:0:1", Hosts.canonical("[2001:DB8:0:0:1:0:0:1]").host);
    assertEquals("192.0.2.1", Hosts.canonical("::ffff:192.0.2.1").host);
    assertEquals("::1", Hosts.canonical("0:0:0:0:0:0:0:1").host);
    assertEquals("api.example.com", Hosts.canonical("API.Example.com..").host);
    assertNull("netip refuses leading zeros", Hosts.parseIP("192.0.2.01"));
    assertTrue(Hosts.isLoopback("127.0.0.2"));
    assertFalse(Hosts.isLoopback("128.0.0.1"));
  }

  private static String pin(int i) {
    byte[] d = new byte[32];
    d[0] = (byte) i;
    return Bytes.base64(d);
  }

  @Test
  public void policyMatchAndProblems() throws Exception {
    Policy p = Policy.parse("{\"version\":1,\"domains\":["
        + "{\"domain\":\"Example.COM\",\"include_subdomains\":true,\"pins\":[\"sha256/" + pin(1) + "\",\"sha256/" + pin(2) + "\"]},"
        + "{\"domain\":\"api.example.com\",\"mode\":\"report-only\",\"pins\":[\"sha256/" + pin(3) + "\"]}]}");
    assertEquals("api.example.com", p.match("API.example.com.").name());
    assertEquals("example.com", p.match("a.b.example.com").name());
    assertEquals("example.com", p.match("example.com").name());
    assertNull(p.match("example.org"));
    try {
      Policy.parse("{\"version\":1,\"domains\":[{\"domain\":\"a.example\",\"pins\":[\"sha256/" + pin(1) + "\",\"sha256/" + pin(1)
          + "\"],\"require_scts\":true},{\"domain\":\"*.b.example\",\"pins\":[]}]}");
      fail("accepted");
    } catch (PolicyException e) {
      String m = e.getMessage();
      assertTrue(m, m.contains("pin listed twice"));
      assertTrue(m, m.contains("require_scts is not supported"));
      assertTrue(m, m.contains("wildcards are not allowed"));
      assertEquals("every problem at once:\n" + m, 3, e.problems().size());
    }
  }

  @Test
  public void expiryIsInclusiveUTC() throws Exception {
    Policy p = Policy.parse("{\"version\":1,\"domains\":[{\"domain\":\"a.example\",\"expires\":\"2027-06-30\",\"pins\":[\"sha256/"
        + pin(1) + "\",\"sha256/" + pin(2) + "\"]}]}");
    Domain d = p.domains().get(0);
    long lastMilli = Times.parseDate("2027-06-30") + 86400000L - 1;
    assertFalse("the last day holds to its end", d.expired(lastMilli));
    assertTrue(d.expired(lastMilli + 1));
    assertEquals("2027-07-01T00:00:00Z", Times.rfc3339(d.expiresAt()));
    assertNull(Times.parseDate("2027-02-29"));
    assertNotNull(Times.parseDate("2028-02-29"));
  }

  @Test
  public void clientConfigReadsTheExport() throws Exception {
    File golden = new File("../../pin/export/testdata/rampart-client.golden");
    String text = TestSupport.read(golden);
    // The golden file is the export's stdout, then its warnings.
    int w = text.indexOf("\n-- warnings --");
    ClientConfig c = ClientConfig.parse(w < 0 ? text : text.substring(0, w));
    assertTrue(c.dynamic());
    assertEquals("mobile", c.bundleName());
    assertEquals(7, c.minVersion());
    assertEquals("https://api.example.com/v1/bundles/mobile", c.bundleURL());
    assertTrue(c.bundleKeys().size() >= 1);
    assertEquals("api.example.com", c.policy().domains().get(0).name());
    try {
      ClientConfig.parse("{\"format\":\"rampart-client/2\",\"policy\":{}}");
      fail("accepted another format");
    } catch (ClientConfig.ConfigException e) {
      assertTrue(e.getMessage(), e.getMessage().contains("rampart-client/1"));
    }
  }

  @Test
  public void reportsAreDeduplicatedFor24Hours() throws Exception {
    final long[] now = {1000};
    final List<String> sent = new ArrayList<String>();
    Reports r = new Reports(new Reports.Sender() {
      @Override
      public void send(String uri, String json) throws IOException {
        synchronized (sent) {
          sent.add(uri);
        }
      }
    }, 0, new Clock() {
      @Override
      public long now() {
        return now[0];
      }
    }, null);
    Policy p = Policy.parse("{\"version\":1,\"report_uri\":\"https://r.example/\",\"domains\":[{\"domain\":\"a.example\",\"pins\":[\"sha256/"
        + pin(1) + "\",\"sha256/" + pin(2) + "\"]}]}");
    List<ChainCert> none = new ArrayList<ChainCert>();
    Failure f = new Failure(0, "a.example", 443, p.domains().get(0), Failure.Reason.PIN_MISMATCH, none, none);
    r.report(f);
    r.report(f);
    now[0] += 24 * 3600 * 1000L - 1;
    r.report(f);
    assertTrue(r.flush(5000));
    assertEquals(1, sent.size());
    assertEquals(2, r.duplicates());
    now[0] += 1;
    r.report(f);
    assertTrue(r.flush(5000));
    assertEquals("again after 24 hours", 2, sent.size());
  }

  /** Mutations of valid inputs: every parser refuses with its typed exception, never anything else. */
  @Test
  public void fuzzParsers() throws Exception {
    Map<String, Object> bundles = Json.parseObject(TestSupport.read(new File(vectors(), "bundles.json")));
    BundleKeys keys = BundleKeys.fromJSON(bundles.get("keys"));
    List<String> seeds = new ArrayList<String>();
    for (Object o : TestSupport.list(bundles.get("cases"))) {
      Map<String, Object> c = TestSupport.obj(o);
      Object j = c.get("jws");
      // Valid bundles only: a mutation of a refused one may well repair it
      // (dropping the padding of the padded case, say).
      if (!"apply".equals(TestSupport.obj(c.get("expect")).get("result"))) {
        continue;
      }
      if (j instanceof String && ((String) j).length() < 20000) {
        seeds.add((String) j);
      }
    }
    String policy = Json.write(bundles.get("embedded_policy"));
    Random rnd = new Random(7469);
    String alphabet = "{}[]\":,.\\ ue0-_=AZaz19\u00e9\ud83d";
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
      String seed = i % 2 == 0 ? seeds.get(rnd.nextInt(seeds.size())) : policy;
      StringBuilder s = new StringBuilder(seed);
      for (int k = rnd.nextInt(4) + 1; k > 0 && s.length() > 0; k--) {
        int at = rnd.nextInt(s.length());
        switch (rnd.nextInt(3)) {
          case 0:
            s.setCharAt(at, alphabet.charAt(rnd.nextInt(alphabet.length())));
            break;
          case 1:
            s.deleteCharAt(at);
            break;
          default:
            s.insert(at, alphabet.charAt(rnd.nextInt(alphabet.length())));
        }
      }
      String in = s.toString();
      try {
        Bundle.verify(in, keys, 1796083200000L);
        if (!seeds.contains(in)) {
          accepted++;
          System.out.println("a mutated bundle verified: " + in);
        }
      } catch (BundleException expected) {
        // refused, typed
      }
      try {
        Policy.parse(in);
      } catch (PolicyException expected) {
        // refused, typed
      }
      try {
        ClientConfig.parse(in);
      } catch (ClientConfig.ConfigException expected) {
        // refused, typed
      }
    }
    // A mutation inside the signed parts must break the signature; only
    // trailing-bit-free edits of the signature's own encoding could not,
    // and those are refused as non-canonical.
    assertEquals("a mutated bundle verified", 0, accepted);
  }

  static File vectors() {
    String d = TestSupport.env("RAMPART_VECTORS");
    return new File(d.isEmpty() ? "../testdata/vectors" : d);
  }
}
