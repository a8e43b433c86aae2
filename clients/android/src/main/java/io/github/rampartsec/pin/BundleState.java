package io.github.rampartsec.pin;

/**
 * The bundle updater's state machine without I/O (Go's pin/bundle Updater):
 * the rollback floor, the bundle in effect, the effective policy and the
 * expiry fallback to the embedded policy. Not thread-safe: BundleUpdater
 * serializes calls.
 */
final class BundleState {
  /** Receives every change of the effective policy. */
  interface Listener {
    void policy(Policy p);
  }

  final String name;
  final BundleKeys keys;
  final Policy embedded;
  final long minVersion;
  final Clock clock;
  private final Listener listener;

  private Bundle active;
  private Bundle floor;
  private String source = "embedded";
  private String etag = "";
  private Policy policy;
  String cacheError = "";
  long updates;

  BundleState(String name, BundleKeys keys, Policy embedded, long minVersion, Clock clock, Listener listener) {
    String e = Bundle.checkName(name);
    if (e != null) {
      throw new IllegalArgumentException("bundle: updater name: " + e);
    }
    if (minVersion < 0) {
      throw new IllegalArgumentException("bundle: minVersion " + minVersion + ": want 0 or more");
    }
    if (keys.size() == 0) {
      throw new IllegalArgumentException("bundle: no trusted keys");
    }
    this.name = name;
    this.keys = keys;
    this.embedded = embedded;
    this.minVersion = minVersion;
    this.clock = clock;
    this.listener = listener;
    this.policy = embedded;
  }

  Policy current() {
    return policy;
  }

  Bundle active() {
    return active;
  }

  Bundle floor() {
    return floor;
  }

  String source() {
    return source;
  }

  String etag() {
    return etag;
  }

  void setETag(String etag) {
    this.etag = etag;
  }

  private void setPolicy(Policy p) {
    policy = p;
    listener.policy(p);
  }

  /**
   * Applies the cached bundle at start-up. An authentic bundle that is
   * expired or not yet valid is not applied but sets the floor. Returns the
   * error that made the cache give no floor, or null.
   */
  Exception loadCache(String text) {
    if (text == null) {
      return null;
    }
    long now = clock.now();
    Bundle b;
    try {
      b = Bundle.verify(text.trim(), keys, now);
    } catch (BundleException e) {
      Bundle fb = e.bundle();
      boolean timing = e.code() == BundleException.Code.EXPIRED || e.code() == BundleException.Code.NOT_YET_VALID;
      if (fb != null && timing && fb.name.equals(name)) {
        if (fb.version < minVersion) {
          return badCache(new BundleException(BundleException.Code.ROLLBACK,
              "the cached version " + fb.version + " is below MinVersion " + minVersion));
        }
        if (floor == null || fb.version > floor.version) {
          floor = fb;
        }
        return null;
      }
      return badCache(e);
    }
    try {
      accept(b, "cache", "");
    } catch (BundleException e) {
      return badCache(e);
    }
    return null;
  }

  private Exception badCache(Exception e) {
    cacheError = e.getMessage();
    return e;
  }

  /** Verifies and applies: true when it took effect, false when it is the bundle in effect again. */
  boolean offer(String jws, String source, String etag) throws BundleException {
    long now = clock.now();
    expire(now);
    Bundle b = Bundle.verify(jws, keys, now);
    return accept(b, source, etag);
  }

  boolean accept(Bundle b, String source, String etag) throws BundleException {
    if (!b.name.equals(name)) {
      throw new BundleException(BundleException.Code.WRONG_NAME,
          "got a bundle for " + Json.quote(b.name) + ", want " + Json.quote(name), b);
    }
    if (b.version < minVersion) {
      throw new BundleException(BundleException.Code.ROLLBACK, "version " + b.version + " is below version " + minVersion
          + ", the lowest this client accepts (MinVersion)", b);
    }
    Bundle f = floor;
    if (f != null) {
      if (b.version < f.version) {
        throw new BundleException(BundleException.Code.ROLLBACK,
            "version " + b.version + " is older than version " + f.version + ", already accepted", b);
      }
      if (b.version == f.version) {
        if (!b.sameContent(f)) {
          throw new BundleException(BundleException.Code.ROLLBACK, "version " + b.version + " differs from the version "
              + f.version + " already accepted (equivocation: the signer issued two bundles under one version)", b);
        }
        if (active != null) {
          if (!etag.isEmpty()) {
            this.etag = etag;
          }
          return false;
        }
        // The floor came from a cached bundle not valid then, and valid now.
      }
    }
    Policy eff;
    try {
      eff = Policy.combine(embedded, b.policy);
    } catch (PolicyException e) {
      throw new BundleException(BundleException.Code.MALFORMED,
          "the bundle's policy does not combine with the embedded policy: " + e.getMessage(), b);
    }
    active = b;
    this.source = source;
    floor = b;
    this.etag = etag;
    cacheError = "";
    if (!source.equals("cache")) {
      updates++;
    }
    setPolicy(eff);
    return true;
  }

  /** Falls back to the embedded policy when the bundle in effect has expired; true when it did. */
  boolean expire(long now) {
    Bundle b = active;
    if (b == null || now < b.exp * 1000) {
      return false;
    }
    active = null;
    source = "embedded";
    etag = "";
    setPolicy(embedded);
    return true;
  }
}
