package io.github.rampartsec.pin;

import java.io.ByteArrayInputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import okhttp3.Dns;

/** Helpers of the tests: files, PEM, trust stores, a TLS server on loopback, JSON comparison. */
final class TestSupport {
  private TestSupport() {}

  static String read(File f) throws IOException {
    InputStream in = new FileInputStream(f);
    try {
      java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
      byte[] buf = new byte[65536];
      int n;
      while ((n = in.read(buf)) > 0) {
        out.write(buf, 0, n);
      }
      return new String(out.toByteArray(), Bytes.UTF8);
    } finally {
      in.close();
    }
  }

  static String env(String name) {
    String v = System.getenv(name);
    return v == null ? "" : v;
  }

  @SuppressWarnings("unchecked")
  static Map<String, Object> obj(Object v) {
    return (Map<String, Object>) v;
  }

  @SuppressWarnings("unchecked")
  static List<Object> list(Object v) {
    return (List<Object>) v;
  }

  static List<X509Certificate> certs(String pem) throws Exception {
    CertificateFactory f = CertificateFactory.getInstance("X.509");
    List<X509Certificate> out = new ArrayList<X509Certificate>();
    for (Certificate c : f.generateCertificates(new ByteArrayInputStream(pem.getBytes(Bytes.UTF8)))) {
      out.add((X509Certificate) c);
    }
    return out;
  }

  static PrivateKey key(String pem) throws Exception {
    String b = pem.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
    return KeyFactory.getInstance("EC").generatePrivate(new PKCS8EncodedKeySpec(Bytes.unbase64(b)));
  }

  /** A trust manager trusting exactly these roots (the test's platform trust store). */
  static X509TrustManager trust(List<X509Certificate> roots) throws Exception {
    KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
    ks.load(null, null);
    int i = 0;
    for (X509Certificate c : roots) {
      ks.setCertificateEntry("root" + i++, c);
    }
    TrustManagerFactory f = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    f.init(ks);
    for (TrustManager t : f.getTrustManagers()) {
      if (t instanceof X509TrustManager) {
        return (X509TrustManager) t;
      }
    }
    throw new IllegalStateException("no X509TrustManager");
  }

  /** Every name resolves to 127.0.0.1. */
  static final Dns LOOPBACK =
      new Dns() {
        @Override
        public List<InetAddress> lookup(String hostname) throws java.net.UnknownHostException {
          return Collections.singletonList(InetAddress.getByName("127.0.0.1"));
        }
      };

  /** A TLS server on loopback presenting chain with key, answering every request "200 ok" and closing. */
  static final class Server implements AutoCloseable {
    final SSLServerSocket socket;
    final Thread thread;

    Server(List<X509Certificate> chain, PrivateKey key) throws Exception {
      SSLContext ctx = SSLContext.getInstance("TLS");
      ctx.init(new javax.net.ssl.KeyManager[] {new FixedKeyManager(chain, key)}, null, null);
      socket = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket();
      socket.bind(new InetSocketAddress("127.0.0.1", 0));
      thread = new Thread(new Runnable() {
        @Override
        public void run() {
          for (; ; ) {
            final Socket s;
            try {
              s = socket.accept();
            } catch (IOException e) {
              return;
            }
            new Thread(new Runnable() {
              @Override
              public void run() {
                serve(s);
              }
            }).start();
          }
        }
      });
      thread.setDaemon(true);
      thread.start();
    }

    int port() {
      return socket.getLocalPort();
    }

    private static void serve(Socket s) {
      try {
        InputStream in = s.getInputStream();
        int state = 0;
        int c;
        while (state < 4 && (c = in.read()) >= 0) {
          state = (c == '\r' || c == '\n') ? state + 1 : 0;
        }
        OutputStream out = s.getOutputStream();
        out.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".getBytes(Bytes.UTF8));
        out.flush();
      } catch (IOException ignored) {
        // the client refused the handshake
      } finally {
        try {
          s.close();
        } catch (IOException ignored) {
          // closing
        }
      }
    }

    @Override
    public void close() throws IOException {
      socket.close();
    }
  }

  /** Presents a fixed list of certificates, which need not be a chain (the appended-chain attacks). */
  static final class FixedKeyManager extends javax.net.ssl.X509ExtendedKeyManager {
    private final X509Certificate[] chain;
    private final PrivateKey key;

    FixedKeyManager(List<X509Certificate> chain, PrivateKey key) {
      this.chain = chain.toArray(new X509Certificate[0]);
      this.key = key;
    }

    @Override
    public String[] getClientAliases(String keyType, java.security.Principal[] issuers) {
      return null;
    }

    @Override
    public String chooseClientAlias(String[] keyType, java.security.Principal[] issuers, Socket socket) {
      return null;
    }

    @Override
    public String[] getServerAliases(String keyType, java.security.Principal[] issuers) {
      return new String[] {"server"};
    }

    @Override
    public String chooseServerAlias(String keyType, java.security.Principal[] issuers, Socket socket) {
      return keyType.startsWith("EC") ? "server" : null;
    }

    @Override
    public String chooseEngineServerAlias(String keyType, java.security.Principal[] issuers, javax.net.ssl.SSLEngine engine) {
      return keyType.startsWith("EC") ? "server" : null;
    }

    @Override
    public X509Certificate[] getCertificateChain(String alias) {
      return chain.clone();
    }

    @Override
    public PrivateKey getPrivateKey(String alias) {
      return key;
    }
  }

  /** A JSON value with object members sorted, to compare two values regardless of member order. */
  static String canon(Object v) {
    return Json.write(sorted(v));
  }

  private static Object sorted(Object v) {
    if (v instanceof Map) {
      Map<String, Object> m = new TreeMap<String, Object>();
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
        m.put(String.valueOf(e.getKey()), sorted(e.getValue()));
      }
      return m;
    }
    if (v instanceof List) {
      List<Object> out = new ArrayList<Object>();
      for (Object x : (List<?>) v) {
        out.add(sorted(x));
      }
      return out;
    }
    return v;
  }

  /** The exception and its causes, messages included, for assertions. */
  static String causes(Throwable t) {
    StringBuilder s = new StringBuilder();
    for (; t != null; t = t.getCause()) {
      s.append(t.getClass().getName()).append(": ").append(t.getMessage()).append('\n');
    }
    return s.toString();
  }

  static <T extends Throwable> T cause(Throwable t, Class<T> c) {
    for (; t != null; t = t.getCause()) {
      if (c.isInstance(t)) {
        return c.cast(t);
      }
    }
    return null;
  }
}
