package io.github.rampartsec.pin;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * An immutable, validated pin policy with the schema and every validation
 * rule of the Go {@code pin} package's policy file, in its JSON form (the
 * form bundles and {@code rampart pin export --format rampart-client} carry).
 */
public final class Policy {
  /** The largest policy text {@link #parse} reads (Go's maxPolicySize). */
  public static final int MAX_SIZE = 1 << 20;

  /** A {@code ct_logs} entry: validated and kept, unused by this client. */
  public static final class CTLog {
    public final String key;
    public final String operator;
    public final String description;

    CTLog(String key, String operator, String description) {
      this.key = key;
      this.operator = operator;
      this.description = description;
    }
  }

  private final String reportURI;
  private final List<CTLog> ctLogs;
  private final List<Domain> domains;
  private final Map<String, Domain> byName = new HashMap<String, Domain>();
  private String canonical;

  private Policy(String reportURI, List<CTLog> ctLogs, List<Domain> domains) {
    this.reportURI = reportURI;
    this.ctLogs = Collections.unmodifiableList(new ArrayList<CTLog>(ctLogs));
    this.domains = Collections.unmodifiableList(new ArrayList<Domain>(domains));
    for (Domain d : domains) {
      byName.put(d.name, d);
    }
  }

  /** The default report URI ("" for none). */
  public String reportURI() {
    return reportURI;
  }

  public List<CTLog> ctLogs() {
    return ctLogs;
  }

  /** The rules, in the policy's order. */
  public List<Domain> domains() {
    return domains;
  }

  /** The rule for host, or null: an exact rule first, else the nearest parent rule with include_subdomains. */
  public Domain match(String host) {
    Hosts.Canonical c = Hosts.canonical(host);
    String h = c.host;
    Domain exact = byName.get(h);
    if (exact != null) {
      return exact;
    }
    if (c.isIP) {
      return null;
    }
    for (int i = h.indexOf('.'); i >= 0; i = h.indexOf('.')) {
      h = h.substring(i + 1);
      Domain d = byName.get(h);
      if (d != null && d.includeSubdomains) {
        return d;
      }
    }
    return null;
  }

  /** The normalized policy in the policy-file schema (Go's Policy.MarshalJSON). */
  public Map<String, Object> toJSON() {
    Map<String, Object> out = new LinkedHashMap<String, Object>();
    out.put("version", new Json.Number("1"));
    if (!reportURI.isEmpty()) {
      out.put("report_uri", reportURI);
    }
    if (!ctLogs.isEmpty()) {
      List<Object> logs = new ArrayList<Object>();
      for (CTLog l : ctLogs) {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("key", l.key);
        m.put("operator", l.operator);
        if (!l.description.isEmpty()) {
          m.put("description", l.description);
        }
        logs.add(m);
      }
      out.put("ct_logs", logs);
    }
    List<Object> ds = new ArrayList<Object>();
    for (Domain d : domains) {
      ds.add(d.toJSON());
    }
    out.put("domains", ds);
    return out;
  }

  /** toJSON as text: two policies with the same text say the same thing. */
  public synchronized String canonical() {
    if (canonical == null) {
      canonical = Json.write(toJSON());
    }
    return canonical;
  }

  // ---- parsing

  /** Parses a policy from JSON text; the exception lists every problem. */
  public static Policy parse(String text) throws PolicyException {
    return parse(text, "");
  }

  static Policy parse(String text, String source) throws PolicyException {
    if (text.length() > MAX_SIZE) {
      throw new PolicyException(one("larger than " + MAX_SIZE + " bytes"), source);
    }
    if (text.trim().isEmpty()) {
      throw new PolicyException(one("empty file"), source);
    }
    Object v;
    try {
      v = Json.parse(text);
    } catch (Json.ParseException e) {
      throw new PolicyException(one("not valid JSON: " + e.getMessage()), source);
    }
    return fromJSON(v, source);
  }

  /** A policy from an already parsed strict JSON value (a bundle's payload member). */
  static Policy fromJSON(Object v, String source) throws PolicyException {
    Decoded d = new Decoded();
    try {
      decode(v, d);
    } catch (Shape e) {
      throw new PolicyException(one(e.getMessage()), source);
    }
    if (!d.problems.isEmpty()) {
      throw new PolicyException(d.problems, source);
    }
    return build(d.reportURI, d.ctLogs, d.domains, source);
  }

  private static List<PolicyException.Problem> one(String message) {
    return Collections.singletonList(new PolicyException.Problem("", message));
  }

  /** A rule before validation. */
  static final class Input {
    String name = "";
    boolean includeSubdomains;
    String mode = "";
    String expires = "";
    List<Pin> pins = new ArrayList<Pin>();
    Map<Pin, String> roles = new LinkedHashMap<Pin, String>();
    boolean allowSinglePin;
    String reportURI = "";
    boolean requireSCTs;

    static Input of(Domain d) {
      Input in = new Input();
      in.name = d.name;
      in.includeSubdomains = d.includeSubdomains;
      in.mode = d.mode.toString();
      in.expires = d.expires;
      in.pins = new ArrayList<Pin>(d.pins);
      in.roles = new LinkedHashMap<Pin, String>(d.roles);
      in.allowSinglePin = d.allowSinglePin;
      in.reportURI = d.reportURI;
      return in;
    }
  }

  private static final class Decoded {
    String reportURI = "";
    List<CTLog> ctLogs = new ArrayList<CTLog>();
    List<Input> domains = new ArrayList<Input>();
    List<PolicyException.Problem> problems = new ArrayList<PolicyException.Problem>();
  }

  /** A problem of the document's shape: reported alone. */
  private static final class Shape extends Exception {
    private static final long serialVersionUID = 1L;

    Shape(String m) {
      super(m);
    }
  }

  private static String typeName(Object v) {
    if (v == Json.NULL) {
      return "null";
    }
    if (v instanceof Boolean) {
      return "a boolean";
    }
    if (v instanceof String) {
      return "a string";
    }
    if (v instanceof Json.Number) {
      return "a number";
    }
    if (v instanceof List) {
      return "an array";
    }
    return "an object";
  }

  private static Shape want(String path, String what, Object v) {
    return new Shape("field " + path + ": want " + what + ", got " + typeName(v));
  }

  private static String str(String path, Object v) throws Shape {
    if (v instanceof String) {
      return (String) v;
    }
    throw want(path, "a string", v);
  }

  private static boolean bool(String path, Object v) throws Shape {
    if (v instanceof Boolean) {
      return (Boolean) v;
    }
    throw want(path, "true or false", v);
  }

  private static List<?> arr(String path, Object v) throws Shape {
    if (v instanceof List) {
      return (List<?>) v;
    }
    throw want(path, "an array", v);
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> obj(String path, Object v) throws Shape {
    if (v instanceof Map) {
      return (Map<String, Object>) v;
    }
    throw want(path, "an object", v);
  }

  private static void decode(Object v, Decoded out) throws Shape {
    BigInteger version = BigInteger.ZERO;
    List<Map<String, Object>> raw = new ArrayList<Map<String, Object>>();
    for (Map.Entry<String, Object> e : obj("(policy)", v).entrySet()) {
      String k = e.getKey();
      Object x = e.getValue();
      if (k.equals("version")) {
        if (!(x instanceof Json.Number)) {
          throw want("version", "an integer", x);
        }
        version = ((Json.Number) x).integer();
        if (version == null) {
          throw new Shape("field version: want an integer, got " + x);
        }
      } else if (k.equals("report_uri")) {
        out.reportURI = str("report_uri", x);
      } else if (k.equals("ct_logs")) {
        List<?> logs = arr("ct_logs", x);
        for (int i = 0; i < logs.size(); i++) {
          String path = "ct_logs[" + i + "]";
          String key = "";
          String operator = "";
          String description = "";
          for (Map.Entry<String, Object> f : obj(path, logs.get(i)).entrySet()) {
            if (f.getKey().equals("key")) {
              key = str(path + ".key", f.getValue());
            } else if (f.getKey().equals("operator")) {
              operator = str(path + ".operator", f.getValue());
            } else if (f.getKey().equals("description")) {
              description = str(path + ".description", f.getValue());
            } else {
              throw new Shape("field " + f.getKey() + " is not a ct_logs field (want key, operator, description)");
            }
          }
          out.ctLogs.add(new CTLog(key, operator, description));
        }
      } else if (k.equals("domains")) {
        List<?> ds = arr("domains", x);
        for (int i = 0; i < ds.size(); i++) {
          raw.add(obj("domains[" + i + "]", ds.get(i)));
        }
      } else {
        throw new Shape("field " + k + " is not a policy field");
      }
    }
    if (!version.equals(BigInteger.ONE)) {
      throw new Shape("version " + version + ": want version: 1");
    }
    for (int i = 0; i < raw.size(); i++) {
      List<String> errs = new ArrayList<String>();
      Input d = decodeDomain(raw.get(i), i, errs);
      String name = d.name.isEmpty() ? "#" + (i + 1) : d.name;
      for (String m : errs) {
        out.problems.add(new PolicyException.Problem(name, m));
      }
      out.domains.add(d);
    }
  }

  private static Input decodeDomain(Map<String, Object> f, int index, List<String> errs) throws Shape {
    String p = "domains[" + index + "]";
    Input d = new Input();
    List<?> rawPins = Collections.emptyList();
    for (Map.Entry<String, Object> e : f.entrySet()) {
      String k = e.getKey();
      Object v = e.getValue();
      if (k.equals("domain")) {
        d.name = str(p + ".domain", v);
      } else if (k.equals("include_subdomains")) {
        d.includeSubdomains = bool(p + ".include_subdomains", v);
      } else if (k.equals("mode")) {
        d.mode = str(p + ".mode", v);
      } else if (k.equals("expires")) {
        d.expires = str(p + ".expires", v);
      } else if (k.equals("pins")) {
        rawPins = arr(p + ".pins", v);
      } else if (k.equals("allow_single_pin")) {
        d.allowSinglePin = bool(p + ".allow_single_pin", v);
      } else if (k.equals("report_uri")) {
        d.reportURI = str(p + ".report_uri", v);
      } else if (k.equals("require_scts")) {
        d.requireSCTs = bool(p + ".require_scts", v);
      } else {
        throw new Shape("field " + k + " is not a domain field");
      }
    }
    if (!d.expires.isEmpty() && Times.parseDate(d.expires) == null) {
      errs.add("expires " + Json.quote(d.expires) + ": want a date as YYYY-MM-DD");
      d.expires = "";
    }
    for (int i = 0; i < rawPins.size(); i++) {
      String pp = p + ".pins[" + i + "]";
      Object e = rawPins.get(i);
      String text;
      String role = "";
      if (e instanceof String) {
        text = (String) e;
      } else if (e instanceof Map) {
        String t = null;
        for (Map.Entry<String, Object> x : obj(pp, e).entrySet()) {
          if (x.getKey().equals("pin")) {
            t = str(pp + ".pin", x.getValue());
          } else if (x.getKey().equals("role")) {
            role = str(pp + ".role", x.getValue());
          } else {
            throw new Shape("field " + x.getKey() + " is not a pin field (want pin, role)");
          }
        }
        if (t == null || t.isEmpty()) {
          throw new Shape(pp + ": pin entry without pin");
        }
        text = t;
      } else {
        throw new Shape(pp + ": a pin is a string or {pin: ..., role: ...}");
      }
      Pin pin;
      try {
        pin = Pin.parse(text);
      } catch (Pin.ParseException err) {
        errs.add(err.getMessage());
        continue;
      }
      d.pins.add(pin);
      if (!role.isEmpty()) {
        d.roles.put(pin, role);
      }
    }
    return d;
  }

  // ---- validation

  private static final String ERR_DUPLICATE_PIN = "pin listed twice; a backup pin must be a different key";
  private static final String ERR_DUPLICATE_DOMAIN = "listed twice: merge the two rules";
  private static final String ERR_REPORT_LOOP =
      "report_uri is on the pinned domain itself: reports of a pin failure could never be delivered (report loop); send them to another host";
  private static final String ERR_NO_BACKUP =
      "enforce mode needs at least two distinct pins: add a backup pin (the pin of a spare key kept offline, see `rampart pin keygen`), or set allow_single_pin: true to accept the risk";
  private static final String ERR_REQUIRE_SCTS =
      "require_scts is not supported by this client: it cannot check Certificate Transparency SCTs, and ignoring the requirement would weaken the policy";

  static String checkReportURI(String s) {
    Hosts.URL u;
    try {
      u = Hosts.parseURL(s);
    } catch (Hosts.URLException e) {
      return e.notAbsolute ? Json.quote(s) + " is not an absolute URL" : Json.quote(s) + " is not a URL";
    }
    if (u.userinfo) {
      return Json.quote(s) + " carries credentials; they would end up in logs";
    }
    if (u.scheme.equals("https")) {
      return null;
    }
    if (u.scheme.equals("http")) {
      if (Hosts.isLoopback(u.hostname)) {
        return null;
      }
      return Json.quote(s)
          + " uses http: reports carry certificate chains and host names, so they must go over https (http is allowed only to a loopback address)";
    }
    return Json.quote(s) + ": scheme must be https";
  }

  private static String checkLabel(String l) {
    if (l.isEmpty()) {
      return "empty label in host name";
    }
    if (l.length() > 63) {
      return "label " + Json.quote(l) + " is longer than 63 characters";
    }
    for (int i = 0; i < l.length(); i++) {
      char c = l.charAt(i);
      if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
        continue;
      }
      if (c == '-' && i != 0 && i != l.length() - 1) {
        continue;
      }
      if (c >= 0x80) {
        return "label " + Json.quote(l) + " is not ASCII: write internationalized names in their punycode (xn--) form";
      }
      return "invalid character '" + c + "' in host name";
    }
    return null;
  }

  // Returns the checked name, or throws with the problem.
  private static String checkName(String name) throws Shape {
    if (name.isEmpty()) {
      throw new Shape("domain is empty");
    }
    String unbracketed = name;
    while (unbracketed.startsWith("[")) {
      unbracketed = unbracketed.substring(1);
    }
    while (unbracketed.endsWith("]")) {
      unbracketed = unbracketed.substring(0, unbracketed.length() - 1);
    }
    Hosts.IP a = Hosts.parseIP(unbracketed);
    if (a != null) {
      if (!a.zone.isEmpty()) {
        throw new Shape("an IP address with a zone cannot be pinned");
      }
      return Hosts.format(Hosts.unmap(a));
    }
    if (name.indexOf('*') >= 0) {
      throw new Shape("wildcards are not allowed: pin the parent domain with include_subdomains: true");
    }
    if (name.indexOf('/') >= 0 || name.indexOf(':') >= 0) {
      throw new Shape("want a host name, without scheme, port or path");
    }
    String n = Hosts.lowerASCII(name.endsWith(".") ? name.substring(0, name.length() - 1) : name);
    if (n.length() > 253) {
      throw new Shape("host name longer than 253 characters");
    }
    for (String l : n.split("\\.", -1)) {
      String e = checkLabel(l);
      if (e != null) {
        throw new Shape(e);
      }
    }
    return n;
  }

  private static Domain checkDomain(Input d, String defaultURI, List<String> errs) {
    String name;
    try {
      name = checkName(d.name);
    } catch (Shape e) {
      errs.add(e.getMessage());
      return null;
    }
    boolean isIP = Hosts.parseIP(name) != null;
    if (isIP && d.includeSubdomains) {
      errs.add("include_subdomains makes no sense for an IP address");
    }
    Domain.Mode mode = Domain.Mode.ENFORCE;
    if (d.mode.equals("report-only")) {
      mode = Domain.Mode.REPORT_ONLY;
    } else if (!d.mode.isEmpty() && !d.mode.equals("enforce")) {
      errs.add("mode " + Json.quote(d.mode) + ": want \"enforce\" or \"report-only\"");
    }
    Long expiresAt = null;
    if (!d.expires.isEmpty()) {
      Long t = Times.parseDate(d.expires);
      if (t == null) {
        errs.add("expires " + Json.quote(d.expires) + ": want a date as YYYY-MM-DD");
      } else {
        expiresAt = t + 86400000L;
      }
    }
    if (d.pins.isEmpty()) {
      errs.add("no pins");
    }
    Map<Pin, Integer> seen = new HashMap<Pin, Integer>();
    for (Pin p : d.pins) {
      Integer n = seen.get(p);
      int c = n == null ? 1 : n + 1;
      seen.put(p, c);
      if (c == 2) {
        errs.add(p + ": " + ERR_DUPLICATE_PIN);
      }
    }
    Map<Pin, String> roles = new LinkedHashMap<Pin, String>();
    TreeMap<String, Map.Entry<Pin, String>> sorted = new TreeMap<String, Map.Entry<Pin, String>>();
    for (Map.Entry<Pin, String> e : d.roles.entrySet()) {
      sorted.put((e.getKey().kind() == Pin.Kind.SPKI ? "spki:" : "cert:") + e.getKey().value(), e);
    }
    for (Map.Entry<String, Map.Entry<Pin, String>> e : sorted.entrySet()) {
      Pin pin = e.getValue().getKey();
      String r = e.getValue().getValue();
      if (!d.pins.contains(pin)) {
        errs.add("a role is given for " + e.getKey() + ", which is not one of the rule's pins");
        continue;
      }
      if (r.equals("leaf") || r.equals("backup") || r.equals("ca")) {
        roles.put(pin, r);
      } else if (!r.isEmpty()) {
        errs.add("pin " + pin + ": role " + Json.quote(r) + ": want leaf, backup or ca");
      }
    }
    if (mode == Domain.Mode.ENFORCE && d.pins.size() == 1 && !d.allowSinglePin) {
      errs.add(ERR_NO_BACKUP);
    }
    if (d.requireSCTs) {
      errs.add(ERR_REQUIRE_SCTS);
    }
    String reportURI = d.reportURI;
    if (reportURI.isEmpty()) {
      reportURI = defaultURI;
    } else {
      String e = checkReportURI(reportURI);
      if (e != null) {
        errs.add("report_uri: " + e);
        return null;
      }
    }
    if (!reportURI.isEmpty()) {
      String h;
      try {
        h = Hosts.canonical(Hosts.parseURL(reportURI).hostname).host;
      } catch (Hosts.URLException e) {
        throw new IllegalStateException(e); // checked above
      }
      if (h.equals(name) || (d.includeSubdomains && h.endsWith("." + name))) {
        errs.add(reportURI + ": " + ERR_REPORT_LOOP);
      }
    }
    if (!errs.isEmpty()) {
      return null;
    }
    return new Domain(name, d.includeSubdomains, mode, d.expires, expiresAt, d.pins, roles, d.allowSinglePin, reportURI);
  }

  private static String checkCTLogs(List<CTLog> logs, List<CTLog> out) {
    Set<String> seen = new HashSet<String>();
    for (CTLog l : logs) {
      byte[] der = Bytes.unbase64(l.key);
      if (der == null || der.length == 0) {
        return "ct_logs: key of " + Json.quote(l.description) + " is not base64";
      }
      String operator = l.operator.trim();
      if (operator.isEmpty()) {
        return "pin: CT log " + Json.quote(l.description) + ": no operator";
      }
      if (!seen.add(l.key)) {
        return "ct_logs: log " + (l.description.isEmpty() ? l.key : l.description) + " is listed twice";
      }
      out.add(new CTLog(l.key, operator, l.description));
    }
    return null;
  }

  static Policy build(String reportURI, List<CTLog> ctLogs, List<Input> inputs, String source) throws PolicyException {
    List<PolicyException.Problem> problems = new ArrayList<PolicyException.Problem>();
    String defaultURI = reportURI;
    if (!defaultURI.isEmpty()) {
      String e = checkReportURI(defaultURI);
      if (e != null) {
        problems.add(new PolicyException.Problem("", "report_uri: " + e));
        defaultURI = "";
      }
    }
    if (inputs.isEmpty()) {
      throw new PolicyException(one("no domains: a policy pins at least one domain"), source);
    }
    List<CTLog> logs = new ArrayList<CTLog>();
    String le = checkCTLogs(ctLogs, logs);
    if (le != null) {
      problems.add(new PolicyException.Problem("", le));
    }
    Set<String> names = new HashSet<String>();
    List<Domain> domains = new ArrayList<Domain>();
    for (int i = 0; i < inputs.size(); i++) {
      Input d = inputs.get(i);
      List<String> errs = new ArrayList<String>();
      Domain r = checkDomain(d, defaultURI, errs);
      if (r == null) {
        String name = d.name.isEmpty() ? "#" + (i + 1) : d.name;
        for (String m : errs) {
          problems.add(new PolicyException.Problem(name, m));
        }
        continue;
      }
      if (!names.add(r.name)) {
        problems.add(new PolicyException.Problem(r.name, ERR_DUPLICATE_DOMAIN));
        continue;
      }
      domains.add(r);
    }
    if (!problems.isEmpty()) {
      throw new PolicyException(problems, source);
    }
    return new Policy(reportURI, logs, domains);
  }

  /**
   * The effective policy of an embedded policy and a bundle's: the embedded
   * rules in their order, each replaced by the bundle's rule of the same
   * domain, then the bundle's other rules. A bundle never removes a rule.
   */
  static Policy combine(Policy embedded, Policy bundle) throws PolicyException {
    Map<String, Integer> byName = new HashMap<String, Integer>();
    for (int i = 0; i < bundle.domains.size(); i++) {
      byName.put(bundle.domains.get(i).name, i);
    }
    Set<Integer> used = new HashSet<Integer>();
    List<Input> out = new ArrayList<Input>();
    for (Domain d : embedded.domains) {
      Integer i = byName.get(d.name);
      if (i != null) {
        out.add(Input.of(bundle.domains.get(i)));
        used.add(i);
      } else {
        out.add(Input.of(d));
      }
    }
    for (int i = 0; i < bundle.domains.size(); i++) {
      if (!used.contains(i)) {
        out.add(Input.of(bundle.domains.get(i)));
      }
    }
    String uri = bundle.reportURI.isEmpty() ? embedded.reportURI : bundle.reportURI;
    List<CTLog> logs = bundle.ctLogs.isEmpty() ? embedded.ctLogs : bundle.ctLogs;
    return build(uri, logs, out, "");
  }
}
