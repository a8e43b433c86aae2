package io.github.rampartsec.pin;

import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.Socket;
import java.security.GeneralSecurityException;
import java.security.InvalidAlgorithmParameterException;
import java.security.cert.CertPathBuilder;
import java.security.cert.CertPathBuilderException;
import java.security.cert.CertStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.PKIXCertPathBuilderResult;
import java.security.cert.TrustAnchor;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedTrustManager;
import javax.net.ssl.X509TrustManager;

/**
 * The platform's validation of a served chain, returning the chain it
 * verified (leaf first, ending with the trust anchor). Pins are matched on
 * that chain, never on the served list: a server (or an attacker with a
 * rogue certificate) can append any certificate to what it sends
 * (CVE-2016-2402).
 *
 * <ul>
 *   <li>Android: {@code android.net.http.X509TrustManagerExtensions#checkServerTrusted},
 *       which validates with the platform's trust manager (network security
 *       config included) and returns the verified chain. Called by reflection
 *       so that the library also builds and runs on the JVM.
 *   <li>JVM: the platform trust manager validates (with the socket or engine,
 *       for its algorithm constraints), then PKIX path building
 *       ({@code CertPathBuilder}) from the trust manager's accepted issuers
 *       rebuilds the verified path by signatures, never by names alone.
 * </ul>
 */
abstract class ChainVerifier {
  /** Validates the served chain the platform's way; returns the verified chain or throws. */
  abstract List<X509Certificate> verify(X509Certificate[] served, String authType, String host, Socket socket,
      SSLEngine engine) throws CertificateException;

  abstract X509TrustManager platform();

  /** The verifier of this platform for a platform trust manager. */
  static ChainVerifier of(X509TrustManager platform) {
    ChainVerifier android = Android.create(platform);
    return android != null ? android : new Pkix(platform);
  }

  /** On Android, through X509TrustManagerExtensions. */
  static final class Android extends ChainVerifier {
    private final X509TrustManager tm;
    private final Object ext;
    private final Method check;

    private Android(X509TrustManager tm, Object ext, Method check) {
      this.tm = tm;
      this.ext = ext;
      this.check = check;
    }

    static Android create(X509TrustManager tm) {
      try {
        Class<?> c = Class.forName("android.net.http.X509TrustManagerExtensions");
        Constructor<?> ctor = c.getConstructor(X509TrustManager.class);
        Method m = c.getMethod("checkServerTrusted", X509Certificate[].class, String.class, String.class);
        return new Android(tm, ctor.newInstance(tm), m);
      } catch (ClassNotFoundException e) {
        return null; // not Android
      } catch (ReflectiveOperationException e) {
        throw new IllegalStateException("pin: X509TrustManagerExtensions is not usable", e);
      }
    }

    @Override
    X509TrustManager platform() {
      return tm;
    }

    @Override
    @SuppressWarnings("unchecked")
    List<X509Certificate> verify(X509Certificate[] served, String authType, String host, Socket socket, SSLEngine engine)
        throws CertificateException {
      try {
        return (List<X509Certificate>) check.invoke(ext, served, authType, host);
      } catch (InvocationTargetException e) {
        Throwable t = e.getCause();
        if (t instanceof CertificateException) {
          throw (CertificateException) t;
        }
        if (t instanceof RuntimeException) {
          throw (RuntimeException) t;
        }
        throw new CertificateException(t);
      } catch (IllegalAccessException e) {
        throw new CertificateException(e);
      }
    }
  }

  /** On the JVM: the platform trust manager, then PKIX path building. */
  static final class Pkix extends ChainVerifier {
    private final X509TrustManager tm;
    private final Set<TrustAnchor> anchors;
    private final Set<X509Certificate> anchorCerts;

    Pkix(X509TrustManager tm) {
      this.tm = tm;
      Set<TrustAnchor> a = new HashSet<TrustAnchor>();
      Set<X509Certificate> ac = new HashSet<X509Certificate>();
      for (X509Certificate c : tm.getAcceptedIssuers()) {
        a.add(new TrustAnchor(c, null));
        ac.add(c);
      }
      this.anchors = Collections.unmodifiableSet(a);
      this.anchorCerts = ac;
    }

    @Override
    X509TrustManager platform() {
      return tm;
    }

    @Override
    List<X509Certificate> verify(X509Certificate[] served, String authType, String host, Socket socket, SSLEngine engine)
        throws CertificateException {
      if (tm instanceof X509ExtendedTrustManager && socket != null) {
        ((X509ExtendedTrustManager) tm).checkServerTrusted(served, authType, socket);
      } else if (tm instanceof X509ExtendedTrustManager && engine != null) {
        ((X509ExtendedTrustManager) tm).checkServerTrusted(served, authType, engine);
      } else {
        tm.checkServerTrusted(served, authType);
      }
      return build(served);
    }

    /** The path the platform validated, rebuilt by signatures from its trust anchors. */
    List<X509Certificate> build(X509Certificate[] served) throws CertificateException {
      if (served.length == 0) {
        throw new CertificateException("pin: empty certificate chain");
      }
      X509Certificate leaf = served[0];
      if (anchorCerts.contains(leaf)) {
        return Collections.singletonList(leaf); // a trust anchor served as the leaf
      }
      if (anchors.isEmpty()) {
        throw new CertificateException("pin: the platform trust manager names no trust anchors");
      }
      try {
        X509CertSelector target = new X509CertSelector();
        target.setCertificate(leaf);
        PKIXBuilderParameters params = new PKIXBuilderParameters(anchors, target);
        params.setRevocationEnabled(false);
        params.addCertStore(CertStore.getInstance("Collection",
            new CollectionCertStoreParameters(new ArrayList<X509Certificate>(Arrays.asList(served)))));
        PKIXCertPathBuilderResult r = (PKIXCertPathBuilderResult) CertPathBuilder.getInstance("PKIX").build(params);
        List<X509Certificate> out = new ArrayList<X509Certificate>();
        for (Certificate c : r.getCertPath().getCertificates()) {
          out.add((X509Certificate) c);
        }
        out.add(r.getTrustAnchor().getTrustedCert());
        return Collections.unmodifiableList(out);
      } catch (CertPathBuilderException e) {
        throw new CertificateException("pin: no certificate path from the served chain to a trust anchor", e);
      } catch (InvalidAlgorithmParameterException e) {
        throw new CertificateException(e);
      } catch (GeneralSecurityException e) {
        throw new CertificateException(e);
      }
    }
  }
}
