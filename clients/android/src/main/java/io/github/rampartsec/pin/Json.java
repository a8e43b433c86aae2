package io.github.rampartsec.pin;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * A strict JSON reader (RFC 8259) for bundles, policies and configuration.
 *
 * <p>It exists because the platform's {@code org.json} is lenient where a
 * signed document must not be: it keeps the last of two members of one name
 * (so a signer and a client could read one payload two ways), accepts
 * comments, single quotes, unquoted names and trailing commas, and reads
 * numbers as doubles. This reader refuses duplicate members, trailing data,
 * lone surrogates and control characters in strings, and keeps numbers as
 * their text.
 *
 * <p>Values: {@code Map<String, Object>} (insertion order), {@code List<Object>},
 * {@code String}, {@code Boolean}, {@link Number}, and {@link #NULL}.
 */
public final class Json {
  private Json() {}

  /** The JSON {@code null}. */
  public static final Object NULL =
      new Object() {
        @Override
        public String toString() {
          return "null";
        }
      };

  /** Nesting deeper than this is refused. */
  public static final int MAX_DEPTH = 128;

  /** A JSON number, kept as its text. */
  public static final class Number {
    private static final Pattern INTEGER = Pattern.compile("-?(0|[1-9][0-9]*)");
    private final String text;

    Number(String text) {
      this.text = text;
    }

    /** The number as written. */
    public String text() {
      return text;
    }

    /** The value when the text is an integer (no fraction, no exponent), else null. */
    public BigInteger integer() {
      return INTEGER.matcher(text).matches() ? new BigInteger(text) : null;
    }

    @Override
    public String toString() {
      return text;
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof Number && ((Number) o).text.equals(text);
    }

    @Override
    public int hashCode() {
      return text.hashCode();
    }
  }

  /** Input that is not strict JSON; the message gives the offset. */
  public static final class ParseException extends Exception {
    private static final long serialVersionUID = 1L;

    ParseException(String message) {
      super(message);
    }
  }

  /** Parses exactly one JSON value (white space around it allowed). */
  public static Object parse(String s) throws ParseException {
    Reader r = new Reader(s);
    r.ws();
    Object v = r.value(0);
    r.ws();
    if (r.i != s.length()) {
      r.fail("trailing data after the JSON value");
    }
    return v;
  }

  /** Parses a JSON object. */
  @SuppressWarnings("unchecked")
  public static Map<String, Object> parseObject(String s) throws ParseException {
    Object v = parse(s);
    if (!(v instanceof Map)) {
      throw new ParseException("not a JSON object");
    }
    return (Map<String, Object>) v;
  }

  private static final class Reader {
    final String s;
    int i;

    Reader(String s) {
      this.s = s;
    }

    void fail(String msg) throws ParseException {
      throw new ParseException(msg + " at offset " + i);
    }

    void ws() {
      while (i < s.length()) {
        char c = s.charAt(i);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
          return;
        }
        i++;
      }
    }

    Object value(int depth) throws ParseException {
      if (depth > MAX_DEPTH) {
        fail("nested too deeply");
      }
      if (i >= s.length()) {
        fail("unexpected end of input");
      }
      char c = s.charAt(i);
      switch (c) {
        case '{':
          return object(depth);
        case '[':
          return array(depth);
        case '"':
          return string();
        case 't':
          return literal("true", Boolean.TRUE);
        case 'f':
          return literal("false", Boolean.FALSE);
        case 'n':
          return literal("null", NULL);
        default:
          if (c == '-' || (c >= '0' && c <= '9')) {
            return number();
          }
          fail("unexpected character");
          return null;
      }
    }

    Object literal(String word, Object v) throws ParseException {
      if (!s.startsWith(word, i)) {
        fail("invalid literal");
      }
      i += word.length();
      return v;
    }

    boolean digit(int k) {
      return k < s.length() && s.charAt(k) >= '0' && s.charAt(k) <= '9';
    }

    Number number() throws ParseException {
      int start = i;
      int k = i;
      if (s.charAt(k) == '-') {
        k++;
      }
      if (k < s.length() && s.charAt(k) == '0') {
        k++;
      } else if (digit(k)) {
        while (digit(k)) {
          k++;
        }
      } else {
        i = k;
        fail("invalid number");
      }
      if (k < s.length() && s.charAt(k) == '.') {
        k++;
        if (!digit(k)) {
          i = k;
          fail("invalid number");
        }
        while (digit(k)) {
          k++;
        }
      }
      if (k < s.length() && (s.charAt(k) == 'e' || s.charAt(k) == 'E')) {
        k++;
        if (k < s.length() && (s.charAt(k) == '+' || s.charAt(k) == '-')) {
          k++;
        }
        if (!digit(k)) {
          i = k;
          fail("invalid number");
        }
        while (digit(k)) {
          k++;
        }
      }
      i = k;
      return new Number(s.substring(start, k));
    }

    String string() throws ParseException {
      i++; // the opening quote
      StringBuilder out = new StringBuilder();
      for (; ; ) {
        if (i >= s.length()) {
          fail("unterminated string");
        }
        char c = s.charAt(i);
        if (c == '"') {
          i++;
          return out.toString();
        }
        if (c < 0x20) {
          fail("control character in string");
        }
        if (c != '\\') {
          if (Character.isHighSurrogate(c)) {
            if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) {
              fail("lone surrogate");
            }
            out.append(c).append(s.charAt(i + 1));
            i += 2;
            continue;
          }
          if (Character.isLowSurrogate(c)) {
            fail("lone surrogate");
          }
          out.append(c);
          i++;
          continue;
        }
        if (i + 1 >= s.length()) {
          fail("unterminated string");
        }
        char e = s.charAt(i + 1);
        i += 2;
        switch (e) {
          case '"':
            out.append('"');
            break;
          case '\\':
            out.append('\\');
            break;
          case '/':
            out.append('/');
            break;
          case 'b':
            out.append('\b');
            break;
          case 'f':
            out.append('\f');
            break;
          case 'n':
            out.append('\n');
            break;
          case 'r':
            out.append('\r');
            break;
          case 't':
            out.append('\t');
            break;
          case 'u':
            {
              int hi = hex4();
              if (hi >= 0xd800 && hi <= 0xdbff) {
                if (!s.startsWith("\\u", i)) {
                  fail("lone surrogate escape");
                }
                i += 2;
                int lo = hex4();
                if (lo < 0xdc00 || lo > 0xdfff) {
                  fail("lone surrogate escape");
                }
                out.append((char) hi).append((char) lo);
              } else if (hi >= 0xdc00 && hi <= 0xdfff) {
                fail("lone surrogate escape");
              } else {
                out.append((char) hi);
              }
              break;
            }
          default:
            i -= 2;
            fail("invalid escape");
        }
      }
    }

    int hex4() throws ParseException {
      if (i + 4 > s.length()) {
        fail("invalid \\u escape");
      }
      int v = 0;
      for (int k = 0; k < 4; k++) {
        int d = Character.digit(s.charAt(i + k), 16);
        if (d < 0 || s.charAt(i + k) > 'f') {
          fail("invalid \\u escape");
        }
        v = v * 16 + d;
      }
      i += 4;
      return v;
    }

    List<Object> array(int depth) throws ParseException {
      i++;
      List<Object> out = new ArrayList<Object>();
      ws();
      if (i < s.length() && s.charAt(i) == ']') {
        i++;
        return Collections.unmodifiableList(out);
      }
      for (; ; ) {
        ws();
        out.add(value(depth + 1));
        ws();
        if (i >= s.length()) {
          fail("expected , or ]");
        }
        char c = s.charAt(i++);
        if (c == ']') {
          return Collections.unmodifiableList(out);
        }
        if (c != ',') {
          i--;
          fail("expected , or ]");
        }
      }
    }

    Map<String, Object> object(int depth) throws ParseException {
      i++;
      Map<String, Object> out = new LinkedHashMap<String, Object>();
      ws();
      if (i < s.length() && s.charAt(i) == '}') {
        i++;
        return Collections.unmodifiableMap(out);
      }
      for (; ; ) {
        ws();
        if (i >= s.length() || s.charAt(i) != '"') {
          fail("expected a member name");
        }
        int at = i;
        String k = string();
        if (out.containsKey(k)) {
          i = at;
          fail("member " + quote(truncate(k)) + " appears twice");
        }
        ws();
        if (i >= s.length() || s.charAt(i) != ':') {
          fail("expected :");
        }
        i++;
        ws();
        out.put(k, value(depth + 1));
        ws();
        if (i >= s.length()) {
          fail("expected , or }");
        }
        char c = s.charAt(i++);
        if (c == '}') {
          return Collections.unmodifiableMap(out);
        }
        if (c != ',') {
          i--;
          fail("expected , or }");
        }
      }
    }
  }

  static String truncate(String s) {
    return s.length() > 64 ? s.substring(0, 64) + "..." : s;
  }

  /** A JSON string literal for s (also used to quote values in messages). */
  public static String quote(String s) {
    StringBuilder b = new StringBuilder(s.length() + 2).append('"');
    for (int k = 0; k < s.length(); k++) {
      char c = s.charAt(k);
      switch (c) {
        case '"':
          b.append("\\\"");
          break;
        case '\\':
          b.append("\\\\");
          break;
        case '\n':
          b.append("\\n");
          break;
        case '\r':
          b.append("\\r");
          break;
        case '\t':
          b.append("\\t");
          break;
        default:
          if (c < 0x20 || c == 0x2028 || c == 0x2029) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
      }
    }
    return b.append('"').toString();
  }

  /** Writes a value of the kinds {@link #parse} returns as compact JSON, members in order. */
  public static String write(Object v) {
    StringBuilder b = new StringBuilder();
    write(b, v);
    return b.toString();
  }

  private static void write(StringBuilder b, Object v) {
    if (v == null || v == NULL) {
      b.append("null");
    } else if (v instanceof Boolean || v instanceof Number) {
      b.append(v.toString());
    } else if (v instanceof java.lang.Number) {
      b.append(v.toString());
    } else if (v instanceof String) {
      b.append(quote((String) v));
    } else if (v instanceof List) {
      b.append('[');
      boolean first = true;
      for (Object x : (List<?>) v) {
        if (!first) {
          b.append(',');
        }
        first = false;
        write(b, x);
      }
      b.append(']');
    } else if (v instanceof Map) {
      b.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
        if (!first) {
          b.append(',');
        }
        first = false;
        b.append(quote(String.valueOf(e.getKey()))).append(':');
        write(b, e.getValue());
      }
      b.append('}');
    } else {
      throw new IllegalArgumentException("not a JSON value: " + v.getClass().getName());
    }
  }
}
