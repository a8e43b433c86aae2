package io.github.rampartsec.pin;

import java.nio.charset.Charset;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * Canonical base64, base64url and hex, and SHA-256. Written here because
 * {@code java.util.Base64} arrived on Android only with API 26, and because
 * signed inputs need canonical decoding (no padding variants, unused
 * trailing bits zero), which lenient decoders do not check.
 */
final class Bytes {
  private Bytes() {}

  static final Charset UTF8 = Charset.forName("UTF-8");
  private static final char[] STD =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".toCharArray();
  private static final char[] URL =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".toCharArray();
  private static final int[] STD_REV = reverse(STD);
  private static final int[] URL_REV = reverse(URL);
  private static final char[] HEX = "0123456789abcdef".toCharArray();

  private static int[] reverse(char[] alphabet) {
    int[] r = new int[128];
    java.util.Arrays.fill(r, -1);
    for (int i = 0; i < alphabet.length; i++) {
      r[alphabet[i]] = i;
    }
    return r;
  }

  static String base64(byte[] b) {
    return encode(b, STD, true);
  }

  static String base64url(byte[] b) {
    return encode(b, URL, false);
  }

  private static String encode(byte[] b, char[] alphabet, boolean pad) {
    StringBuilder s = new StringBuilder((b.length + 2) / 3 * 4);
    int i = 0;
    for (; i + 3 <= b.length; i += 3) {
      int v = (b[i] & 0xff) << 16 | (b[i + 1] & 0xff) << 8 | (b[i + 2] & 0xff);
      s.append(alphabet[v >>> 18]).append(alphabet[(v >>> 12) & 63]);
      s.append(alphabet[(v >>> 6) & 63]).append(alphabet[v & 63]);
    }
    int rest = b.length - i;
    if (rest == 1) {
      int v = (b[i] & 0xff) << 16;
      s.append(alphabet[v >>> 18]).append(alphabet[(v >>> 12) & 63]);
      if (pad) {
        s.append("==");
      }
    } else if (rest == 2) {
      int v = (b[i] & 0xff) << 16 | (b[i + 1] & 0xff) << 8;
      s.append(alphabet[v >>> 18]).append(alphabet[(v >>> 12) & 63]).append(alphabet[(v >>> 6) & 63]);
      if (pad) {
        s.append('=');
      }
    }
    return s.toString();
  }

  /** Canonical standard base64 with padding; null when s is not that. */
  static byte[] unbase64(String s) {
    if (s.length() % 4 != 0) {
      return null;
    }
    int pad = 0;
    if (s.endsWith("==")) {
      pad = 2;
    } else if (s.endsWith("=")) {
      pad = 1;
    }
    return decode(s.substring(0, s.length() - pad), STD_REV, s.length() == 0 ? 0 : pad);
  }

  /** Canonical unpadded base64url; null when s is not that. */
  static byte[] unbase64url(String s) {
    if (s.length() % 4 == 1) {
      return null;
    }
    return decode(s, URL_REV, -1);
  }

  // pad: the padding the caller removed (0..2), or -1 for unpadded input.
  private static byte[] decode(String s, int[] rev, int pad) {
    int rest = s.length() % 4;
    if (pad >= 0 && pad != (rest == 0 ? 0 : 4 - rest)) {
      return null;
    }
    if (rest == 1) {
      return null;
    }
    byte[] out = new byte[s.length() / 4 * 3 + (rest == 0 ? 0 : rest - 1)];
    int o = 0;
    int acc = 0;
    int bits = 0;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      int v = c < 128 ? rev[c] : -1;
      if (v < 0) {
        return null;
      }
      acc = (acc << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[o++] = (byte) (acc >>> bits);
      }
    }
    if ((acc & ((1 << bits) - 1)) != 0) {
      return null; // unused trailing bits must be zero
    }
    return out;
  }

  static String hex(byte[] b) {
    char[] c = new char[b.length * 2];
    for (int i = 0; i < b.length; i++) {
      c[2 * i] = HEX[(b[i] >> 4) & 15];
      c[2 * i + 1] = HEX[b[i] & 15];
    }
    return new String(c);
  }

  /** Hex in either case; null when s is not an even number of hex digits. */
  static byte[] unhex(String s) {
    if (s.length() % 2 != 0) {
      return null;
    }
    byte[] out = new byte[s.length() / 2];
    for (int i = 0; i < out.length; i++) {
      int hi = hexDigit(s.charAt(2 * i));
      int lo = hexDigit(s.charAt(2 * i + 1));
      if (hi < 0 || lo < 0) {
        return null;
      }
      out[i] = (byte) (hi << 4 | lo);
    }
    return out;
  }

  private static int hexDigit(char c) {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
      return c - 'A' + 10;
    }
    return -1;
  }

  static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is not available", e);
    }
  }

  static byte[] sha256(byte[] b) {
    return sha256().digest(b);
  }
}
