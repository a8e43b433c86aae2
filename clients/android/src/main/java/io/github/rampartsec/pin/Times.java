package io.github.rampartsec.pin;

/**
 * Dates and RFC 3339 times in UTC, proleptic Gregorian as Go's {@code time}
 * package: without {@code java.time}, which Android has only from API 26.
 */
final class Times {
  private Times() {}

  /** Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil). */
  static long daysFromCivil(long y, int m, int d) {
    y -= m <= 2 ? 1 : 0;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
  }

  static boolean leap(long y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  }

  /**
   * Parses YYYY-MM-DD as Go's time.Parse("2006-01-02") and returns the
   * milliseconds since the epoch of its 00:00 UTC, or null.
   */
  static Long parseDate(String s) {
    if (s.length() != 10 || s.charAt(4) != '-' || s.charAt(7) != '-') {
      return null;
    }
    for (int i = 0; i < 10; i++) {
      if (i != 4 && i != 7 && (s.charAt(i) < '0' || s.charAt(i) > '9')) {
        return null;
      }
    }
    int y = Integer.parseInt(s.substring(0, 4));
    int m = Integer.parseInt(s.substring(5, 7));
    int d = Integer.parseInt(s.substring(8, 10));
    if (m < 1 || m > 12 || d < 1) {
      return null;
    }
    int[] len = {31, leap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (d > len[m - 1]) {
      return null;
    }
    return daysFromCivil(y, m, d) * 86400000L;
  }

  // Math.floorDiv is on Android only from API 24.
  static long floorDiv(long a, long b) {
    long q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
  }

  /** RFC 3339 in UTC to the second (Go's time.RFC3339 for UTC times). */
  static String rfc3339(long ms) {
    long secs = floorDiv(ms, 1000L);
    long days = floorDiv(secs, 86400L);
    long rem = secs - days * 86400L;
    // civil_from_days
    long z = days + 719468;
    long era = (z >= 0 ? z : z - 146096) / 146097;
    long doe = z - era * 146097;
    long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long y = yoe + era * 400;
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long mp = (5 * doy + 2) / 153;
    long d = doy - (153 * mp + 2) / 5 + 1;
    long m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) {
      y++;
    }
    return String.format(
        java.util.Locale.ROOT, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, rem / 3600, rem / 60 % 60, rem % 60);
  }
}
