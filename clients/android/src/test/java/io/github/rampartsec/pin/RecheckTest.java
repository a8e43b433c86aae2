package io.github.rampartsec.pin;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLSession;
import org.junit.Test;

/**
 * The re-check of a session the trust manager did not see (JSSE skips the
 * trust manager when it resumes a session): the served certificates are
 * validated again by the platform and the pins checked on the rebuilt
 * verified chain, never on the served list.
 */
public class RecheckTest {
  /** An SSLSession with the given peer, host and port, recording putValue. */
  private static SSLSession session(final X509Certificate[] peer, final Map<String, Object> values) {
    return (SSLSession) Proxy.newProxyInstance(SSLSession.class.getClassLoader(), new Class<?>[] {SSLSession.class},
        new InvocationHandler() {
          @Override
          public Object invoke(Object proxy, Method m, Object[] args) {
            String n = m.getName();
            if (n.equals("getPeerCertificates")) {
              return peer.clone();
            }
            if (n.equals("getPeerHost")) {
              return "api.rampart.example";
            }
            if (n.equals("getPeerPort")) {
              return 443;
            }
            if (n.equals("putValue")) {
              values.put((String) args[0], args[1]);
              return null;
            }
            if (n.equals("getValue")) {
              return values.get((String) args[0]);
            }
            throw new UnsupportedOperationException(n);
          }
        });
  }

  private static X509Certificate[] chain(Map<String, Object> certs, String... names) throws Exception {
    List<X509Certificate> out = new ArrayList<X509Certificate>();
    for (String n : names) {
      out.add(TestSupport.certs((String) TestSupport.obj(certs.get(n)).get("pem")).get(0));
    }
    return out.toArray(new X509Certificate[0]);
  }

  @Test
  public void resumedSessionIsCheckedOnTheVerifiedChain() throws Exception {
    Map<String, Object> pki = Json.parseObject(TestSupport.read(new File(CoreTest.vectors(), "pki.json")));
    Map<String, Object> certs = TestSupport.obj(pki.get("certificates"));
    Object policy = null;
    for (Object o : TestSupport.list(pki.get("cases"))) {
      if ("legit".equals(TestSupport.obj(o).get("name"))) {
        policy = TestSupport.obj(o).get("policy");
      }
    }
    final List<Failure> reports = new ArrayList<Failure>();
    X509Certificate[] roots = chain(certs, "legit-root", "rogue-root");
    RampartPinning p = RampartPinning.builder(Policy.fromJSON(policy, ""))
        .platformTrustManager(TestSupport.trust(java.util.Arrays.asList(roots)))
        .clock(new Clock() {
          @Override
          public long now() {
            return 1796083200000L;
          }
        })
        .reporter(new Reporter() {
          @Override
          public void report(Failure f) {
            reports.add(f);
          }
        })
        .build();
    PinningTrustManager tm = (PinningTrustManager) p.trustManager();

    Map<String, Object> values = new HashMap<String, Object>();
    PinningTrustManager.Check c = tm.recheck(session(chain(certs, "legit-leaf", "legit-int"), values));
    assertEquals("the verified chain ends at the root", 3, c.verified.size());
    assertTrue("the check is recorded in the session", values.get(PinningTrustManager.SESSION_KEY) == c);

    for (String[] served : new String[][] {{"rogue-leaf", "rogue-int"}, {"rogue-leaf", "rogue-int", "legit-int", "legit-root"}}) {
      try {
        tm.recheck(session(chain(certs, served), new HashMap<String, Object>()));
        fail("accepted " + java.util.Arrays.toString(served));
      } catch (PinMismatchException expected) {
        // refused by the pins, on the verified chain
      }
    }
    assertEquals("each refusal reported", 2, reports.size());
    // The hostname-aware method Android's X509TrustManagerExtensions calls.
    assertEquals(3, tm.checkServerTrusted(chain(certs, "legit-leaf", "legit-int"), "UNKNOWN", "api.rampart.example").size());
    try {
      tm.checkServerTrusted(chain(certs, "rogue-leaf", "rogue-int", "legit-int"), "UNKNOWN", "API.rampart.example");
      fail("accepted the appended chain");
    } catch (PinMismatchException expected) {
      // refused
    }
    try {
      tm.recheck(session(chain(certs, "self-signed-pinned-key"), new HashMap<String, Object>()));
      fail("accepted a self-signed certificate on the pinned key");
    } catch (java.security.cert.CertificateException e) {
      assertTrue("the platform refuses it, not the pins: " + e, !(e instanceof PinMismatchException));
    }
  }
}
