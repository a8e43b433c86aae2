package io.github.rampartsec.pin;

import java.util.Locale;

/**
 * Host names, IP addresses and URLs with the rules of the Go code: IP
 * addresses as Go's {@code net/netip} parses and prints them (IPv4 in
 * dotted decimal without leading zeros, IPv6 printed per RFC 5952), and
 * absolute URLs read as Go's {@code net/url} reads the parts the policy
 * checks use.
 */
final class Hosts {
  private Hosts() {}

  /** An IP address: 4 or 16 bytes and an IPv6 zone ("" for none). */
  static final class IP {
    final byte[] bytes;
    final String zone;

    IP(byte[] bytes, String zone) {
      this.bytes = bytes;
      this.zone = zone;
    }
  }

  static byte[] parseIPv4(String s) {
    String[] parts = s.split("\\.", -1);
    if (parts.length != 4) {
      return null;
    }
    byte[] out = new byte[4];
    for (int i = 0; i < 4; i++) {
      String p = parts[i];
      if (p.isEmpty() || p.length() > 3) {
        return null;
      }
      for (int k = 0; k < p.length(); k++) {
        if (p.charAt(k) < '0' || p.charAt(k) > '9') {
          return null;
        }
      }
      if (p.length() > 1 && p.charAt(0) == '0') {
        return null; // netip refuses leading zeros
      }
      int v = Integer.parseInt(p);
      if (v > 255) {
        return null;
      }
      out[i] = (byte) v;
    }
    return out;
  }

  private static int[] groups(String list, boolean last) {
    if (list.isEmpty()) {
      return new int[0];
    }
    String[] g = list.split(":", -1);
    int[] tmp = new int[g.length * 2];
    int n = 0;
    for (int i = 0; i < g.length; i++) {
      String x = g[i];
      if (last && i == g.length - 1 && x.indexOf('.') >= 0) {
        byte[] v4 = parseIPv4(x);
        if (v4 == null) {
          return null;
        }
        tmp[n++] = (v4[0] & 0xff) << 8 | (v4[1] & 0xff);
        tmp[n++] = (v4[2] & 0xff) << 8 | (v4[3] & 0xff);
        continue;
      }
      if (x.isEmpty() || x.length() > 4) {
        return null;
      }
      int v = 0;
      for (int k = 0; k < x.length(); k++) {
        int d = Character.digit(x.charAt(k), 16);
        if (d < 0 || x.charAt(k) > 'f') {
          return null;
        }
        v = v * 16 + d;
      }
      tmp[n++] = v;
    }
    return java.util.Arrays.copyOf(tmp, n);
  }

  private static byte[] parseIPv6(String s) {
    int dc = s.indexOf("::");
    int[] head;
    int[] tail;
    if (dc >= 0) {
      if (s.indexOf("::", dc + 1) >= 0) {
        return null;
      }
      head = groups(s.substring(0, dc), false);
      tail = groups(s.substring(dc + 2), true);
    } else {
      head = groups(s, true);
      tail = new int[0];
    }
    if (head == null || tail == null) {
      return null;
    }
    if (dc < 0 ? head.length != 8 : head.length + tail.length > 7) {
      return null;
    }
    int[] w = new int[8];
    System.arraycopy(head, 0, w, 0, head.length);
    System.arraycopy(tail, 0, w, 8 - tail.length, tail.length);
    byte[] out = new byte[16];
    for (int i = 0; i < 8; i++) {
      out[2 * i] = (byte) (w[i] >> 8);
      out[2 * i + 1] = (byte) w[i];
    }
    return out;
  }

  /** Parses an IP address as netip.ParseAddr; null when s is not one. */
  static IP parseIP(String s) {
    if (s.indexOf(':') >= 0) {
      String zone = "";
      String addr = s;
      int pct = s.indexOf('%');
      if (pct >= 0) {
        zone = s.substring(pct + 1);
        addr = s.substring(0, pct);
        if (zone.isEmpty()) {
          return null;
        }
      }
      byte[] b = parseIPv6(addr);
      return b == null ? null : new IP(b, zone);
    }
    byte[] b = parseIPv4(s);
    return b == null ? null : new IP(b, "");
  }

  private static boolean mapped(byte[] b) {
    if (b.length != 16 || b[10] != (byte) 0xff || b[11] != (byte) 0xff) {
      return false;
    }
    for (int i = 0; i < 10; i++) {
      if (b[i] != 0) {
        return false;
      }
    }
    return true;
  }

  /** The address without an IPv4-mapped prefix, and without zone (netip's Unmap). */
  static IP unmap(IP a) {
    if (mapped(a.bytes)) {
      return new IP(java.util.Arrays.copyOfRange(a.bytes, 12, 16), "");
    }
    return a;
  }

  /** netip's String. */
  static String format(IP a) {
    byte[] b = a.bytes;
    if (b.length == 4) {
      return (b[0] & 0xff) + "." + (b[1] & 0xff) + "." + (b[2] & 0xff) + "." + (b[3] & 0xff);
    }
    String out;
    if (mapped(b)) {
      out = "::ffff:" + (b[12] & 0xff) + "." + (b[13] & 0xff) + "." + (b[14] & 0xff) + "." + (b[15] & 0xff);
    } else {
      int[] w = new int[8];
      for (int i = 0; i < 8; i++) {
        w[i] = (b[2 * i] & 0xff) << 8 | (b[2 * i + 1] & 0xff);
      }
      // RFC 5952: the longest run of two or more zero groups becomes "::",
      // the first on a tie.
      int best = -1;
      int bestLen = 1;
      for (int i = 0; i < 8; ) {
        if (w[i] != 0) {
          i++;
          continue;
        }
        int j = i;
        while (j < 8 && w[j] == 0) {
          j++;
        }
        if (j - i > bestLen) {
          best = i;
          bestLen = j - i;
        }
        i = j;
      }
      StringBuilder s = new StringBuilder();
      for (int i = 0; i < 8; i++) {
        if (i == best) {
          s.append("::");
          i += bestLen - 1;
          continue;
        }
        if (s.length() > 0 && s.charAt(s.length() - 1) != ':') {
          s.append(':');
        }
        s.append(Integer.toHexString(w[i]));
      }
      out = s.toString();
    }
    return a.zone.isEmpty() ? out : out + "%" + a.zone;
  }

  /** "localhost", 127.0.0.0/8 or ::1 (mapped addresses unmapped first), as Go's httpx.IsLoopbackHost. */
  static boolean isLoopback(String h) {
    if (h.equals("localhost")) {
      return true;
    }
    IP a = parseIP(h);
    if (a == null) {
      return false;
    }
    byte[] u = unmap(a).bytes;
    if (u.length == 4) {
      return (u[0] & 0xff) == 127;
    }
    for (int i = 0; i < 15; i++) {
      if (u[i] != 0) {
        return false;
      }
    }
    return u[15] == 1;
  }

  /** The canonical form of a server name for matching, and whether it is an IP address. */
  static final class Canonical {
    final String host;
    final boolean isIP;

    Canonical(String host, boolean isIP) {
      this.host = host;
      this.isIP = isIP;
    }
  }

  /** As Go's canonicalHost: trailing dots and brackets removed, IPs normalized, names lowercased. */
  static Canonical canonical(String host) {
    for (; ; ) {
      String h = host;
      while (h.endsWith(".")) {
        h = h.substring(0, h.length() - 1);
      }
      if (h.length() > 1 && h.charAt(0) == '[' && h.charAt(h.length() - 1) == ']') {
        h = h.substring(1, h.length() - 1);
      }
      if (h.equals(host)) {
        break;
      }
      host = h;
    }
    if (mayBeIP(host)) {
      IP a = parseIP(host);
      if (a != null) {
        IP u = unmap(a);
        return new Canonical(format(new IP(u.bytes, "")), true);
      }
    }
    return new Canonical(lowerASCII(host), false);
  }

  private static boolean mayBeIP(String h) {
    if (h.isEmpty()) {
      return false;
    }
    if (h.indexOf(':') >= 0) {
      return true;
    }
    for (int i = 0; i < h.length(); i++) {
      char c = h.charAt(i);
      if (c != '.' && (c < '0' || c > '9')) {
        return false;
      }
    }
    return true;
  }

  static String lowerASCII(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c >= 'A' && c <= 'Z') {
        return s.toLowerCase(Locale.ROOT);
      }
    }
    return s;
  }

  /** An absolute URL's parts. */
  static final class URL {
    final String scheme; // lowercase
    final String hostname; // without brackets or port
    final String port;
    final boolean userinfo;

    URL(String scheme, String hostname, String port, boolean userinfo) {
      this.scheme = scheme;
      this.hostname = hostname;
      this.port = port;
      this.userinfo = userinfo;
    }
  }

  /** A URL that is not absolute, or not a URL at all. */
  static final class URLException extends Exception {
    private static final long serialVersionUID = 1L;
    final boolean notAbsolute;

    URLException(String message, boolean notAbsolute) {
      super(message);
      this.notAbsolute = notAbsolute;
    }
  }

  static URL parseURL(String s) throws URLException {
    int colon = s.indexOf(':');
    if (colon <= 0 || !isScheme(s.substring(0, colon))) {
      throw new URLException(Json.quote(s) + " is not an absolute URL", true);
    }
    String scheme = lowerASCII(s.substring(0, colon));
    String after = s.substring(colon + 1);
    if (!after.startsWith("//")) {
      throw new URLException(Json.quote(s) + " is not an absolute URL", true);
    }
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c <= 0x20 || c == 0x7f) {
        throw new URLException(Json.quote(s) + " is not a URL: it contains a space or control character", false);
      }
    }
    String body = after.substring(2);
    int end = body.length();
    for (char c : new char[] {'/', '?', '#'}) {
      int k = body.indexOf(c);
      if (k >= 0 && k < end) {
        end = k;
      }
    }
    String authority = body.substring(0, end);
    boolean userinfo = false;
    int at = authority.lastIndexOf('@');
    if (at >= 0) {
      userinfo = true;
      authority = authority.substring(at + 1);
    }
    String host = authority;
    String port = "";
    if (authority.startsWith("[")) {
      int close = authority.indexOf(']');
      if (close < 0) {
        throw new URLException(Json.quote(s) + ": missing ']' in host", false);
      }
      host = authority.substring(0, close + 1);
      String tail = authority.substring(close + 1);
      if (!tail.isEmpty()) {
        if (!tail.startsWith(":")) {
          throw new URLException(Json.quote(s) + ": invalid port", false);
        }
        port = tail.substring(1);
      }
    } else {
      int c = authority.lastIndexOf(':');
      if (c >= 0) {
        host = authority.substring(0, c);
        port = authority.substring(c + 1);
      }
    }
    for (int i = 0; i < port.length(); i++) {
      if (port.charAt(i) < '0' || port.charAt(i) > '9') {
        throw new URLException(Json.quote(s) + ": invalid port " + Json.quote(port), false);
      }
    }
    if (host.isEmpty()) {
      throw new URLException(Json.quote(s) + " is not an absolute URL", true);
    }
    String hostname = host.startsWith("[") ? host.substring(1, host.length() - 1) : host;
    return new URL(scheme, hostname, port, userinfo);
  }

  private static boolean isScheme(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      boolean letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (i == 0 ? !letter : !(letter || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '-')) {
        return false;
      }
    }
    return true;
  }
}
