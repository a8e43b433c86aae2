package io.github.rampartsec.pin;

import java.io.File;
import java.math.BigInteger;
import java.security.GeneralSecurityException;
import java.util.Map;

/**
 * The file {@code rampart pin export --format rampart-client} writes: the
 * embedded policy, and for dynamic pinning the bundle keys, URL, name and
 * lowest accepted version. Ship it in the app (an asset or raw resource)
 * and read it with {@link #parse}.
 */
public final class ClientConfig {
  /** The format this library reads. */
  public static final String FORMAT = "rampart-client/1";

  private final Policy policy;
  private final BundleKeys keys;
  private final String bundleURL;
  private final String bundleName;
  private final long minVersion;

  private ClientConfig(Policy policy, BundleKeys keys, String bundleURL, String bundleName, long minVersion) {
    this.policy = policy;
    this.keys = keys;
    this.bundleURL = bundleURL;
    this.bundleName = bundleName;
    this.minVersion = minVersion;
  }

  /** The configuration is not one this library can use; the message says why. */
  public static final class ConfigException extends Exception {
    private static final long serialVersionUID = 1L;

    ConfigException(String message, Throwable cause) {
      super(message, cause);
    }
  }

  private static ConfigException bad(String m) {
    return new ConfigException("pin: client configuration: " + m, null);
  }

  /** Reads a rampart-client file (its text). */
  public static ClientConfig parse(String text) throws ConfigException {
    if (text.length() > Policy.MAX_SIZE * 2) {
      throw bad("larger than " + Policy.MAX_SIZE * 2 + " bytes");
    }
    Map<String, Object> m;
    try {
      m = Json.parseObject(text);
    } catch (Json.ParseException e) {
      throw bad("not valid JSON: " + e.getMessage());
    }
    Object format = m.get("format");
    if (!FORMAT.equals(format)) {
      throw bad("format " + (format instanceof String ? Json.quote((String) format) : "missing")
          + ": want " + Json.quote(FORMAT) + " (written by rampart pin export --format rampart-client)");
    }
    for (String k : m.keySet()) {
      if (!k.matches("format|comment|policy|bundle_keys|bundle_url|bundle_name|min_version")) {
        throw bad("unknown member " + Json.quote(Json.truncate(k)));
      }
    }
    Policy policy;
    try {
      Object p = m.get("policy");
      if (!(p instanceof Map)) {
        throw bad("policy: want an object");
      }
      policy = Policy.fromJSON(p, "");
    } catch (PolicyException e) {
      throw new ConfigException("pin: client configuration: " + e.getMessage(), e);
    }
    BundleKeys keys = null;
    String url = string(m, "bundle_url");
    String name = string(m, "bundle_name");
    long min = 0;
    Object mv = m.get("min_version");
    if (mv != null) {
      BigInteger n = mv instanceof Json.Number ? ((Json.Number) mv).integer() : null;
      if (n == null || n.signum() < 0 || n.bitLength() > 62) {
        throw bad("min_version: want an integer, 0 or more");
      }
      min = n.longValue();
    }
    if (m.containsKey("bundle_keys")) {
      try {
        keys = BundleKeys.fromJSON(m.get("bundle_keys"));
      } catch (GeneralSecurityException e) {
        throw new ConfigException("pin: client configuration: " + e.getMessage(), e);
      }
    }
    boolean dynamic = keys != null || !url.isEmpty() || !name.isEmpty();
    if (dynamic && (keys == null || url.isEmpty() || name.isEmpty())) {
      throw bad("bundle_keys, bundle_url and bundle_name go together (dynamic pinning needs all three)");
    }
    if (dynamic) {
      String e = Bundle.checkName(name);
      if (e != null) {
        throw bad(e);
      }
      try {
        // Expiry is checked at each fetch, not here: a file read after its
        // rule expired still loads, and the updater then refuses to fetch.
        BundleUpdater.checkControlPlane(policy, url, null);
      } catch (BundleException e2) {
        throw new ConfigException("pin: client configuration: " + e2.getMessage(), e2);
      }
    }
    return new ClientConfig(policy, keys, url, name, min);
  }

  private static String string(Map<String, Object> m, String k) throws ConfigException {
    Object v = m.get(k);
    if (v == null) {
      return "";
    }
    if (!(v instanceof String)) {
      throw bad(k + ": want a string");
    }
    return (String) v;
  }

  /** The embedded policy: the pins the app ships with, and the floor of every bundle. */
  public Policy policy() {
    return policy;
  }

  /** Whether the file configures dynamic pinning (signed bundles). */
  public boolean dynamic() {
    return keys != null;
  }

  public BundleKeys bundleKeys() {
    return keys;
  }

  public String bundleURL() {
    return bundleURL;
  }

  public String bundleName() {
    return bundleName;
  }

  public long minVersion() {
    return minVersion;
  }

  /** An updater for the pinning client, keeping its floor in cacheFile (e.g. in the app's no-backup files directory). */
  public BundleUpdater.Builder updater(RampartPinning pinning, File cacheFile) throws ConfigException {
    if (!dynamic()) {
      throw bad("no bundle_keys, bundle_url and bundle_name: this configuration is static");
    }
    return BundleUpdater.builder(bundleURL, bundleName, keys, policy, pinning).cacheFile(cacheFile).minVersion(minVersion);
  }
}
