package io.github.rampartsec.pin;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** A validated pinning rule for one host name, or a name and its subdomains. Immutable. */
public final class Domain {
  /** Whether a failure refuses the connection or is only reported. */
  public enum Mode {
    ENFORCE("enforce"),
    REPORT_ONLY("report-only");

    private final String text;

    Mode(String text) {
      this.text = text;
    }

    /** "enforce" or "report-only", as in the policy file. */
    @Override
    public String toString() {
      return text;
    }
  }

  final String name;
  final boolean includeSubdomains;
  final Mode mode;
  final String expires;
  final Long expiresAt;
  final List<Pin> pins;
  final Map<Pin, String> roles;
  final boolean allowSinglePin;
  final String reportURI;

  Domain(String name, boolean includeSubdomains, Mode mode, String expires, Long expiresAt, List<Pin> pins,
      Map<Pin, String> roles, boolean allowSinglePin, String reportURI) {
    this.name = name;
    this.includeSubdomains = includeSubdomains;
    this.mode = mode;
    this.expires = expires;
    this.expiresAt = expiresAt;
    this.pins = Collections.unmodifiableList(new ArrayList<Pin>(pins));
    this.roles = Collections.unmodifiableMap(new LinkedHashMap<Pin, String>(roles));
    this.allowSinglePin = allowSinglePin;
    this.reportURI = reportURI;
  }

  /** Lowercase host name without trailing dot, or an IP address as Go's netip prints it. */
  public String name() {
    return name;
  }

  public boolean includeSubdomains() {
    return includeSubdomains;
  }

  public Mode mode() {
    return mode;
  }

  /** The last day (inclusive, UTC) the pins hold, YYYY-MM-DD; "" for none. */
  public String expires() {
    return expires;
  }

  /** The first instant (ms since the epoch) at which the pins no longer hold; null for never. */
  public Long expiresAt() {
    return expiresAt;
  }

  /** Whether the pin set has expired at now (ms): {@code expires} is inclusive. */
  public boolean expired(long now) {
    return expiresAt != null && now >= expiresAt;
  }

  public List<Pin> pins() {
    return pins;
  }

  /** The role of a pin ("leaf", "backup", "ca"), or null. */
  public String role(Pin p) {
    return roles.get(p);
  }

  public boolean allowSinglePin() {
    return allowSinglePin;
  }

  /** The rule's report URI, resolved (its own, else its policy's default); "" for none. */
  public String reportURI() {
    return reportURI;
  }

  /** The rule in the normalized policy-file form (Go's MarshalJSON), members in order. */
  public Map<String, Object> toJSON() {
    Map<String, Object> o = new LinkedHashMap<String, Object>();
    o.put("domain", name);
    o.put("include_subdomains", includeSubdomains);
    o.put("mode", mode.toString());
    if (!expires.isEmpty()) {
      o.put("expires", expires);
    }
    List<Object> ps = new ArrayList<Object>();
    for (Pin p : pins) {
      String r = roles.get(p);
      if (r == null) {
        ps.add(p.toString());
      } else {
        Map<String, Object> e = new LinkedHashMap<String, Object>();
        e.put("pin", p.toString());
        e.put("role", r);
        ps.add(e);
      }
    }
    o.put("pins", ps);
    if (allowSinglePin) {
      o.put("allow_single_pin", true);
    }
    if (!reportURI.isEmpty()) {
      o.put("report_uri", reportURI);
    }
    return o;
  }
}
