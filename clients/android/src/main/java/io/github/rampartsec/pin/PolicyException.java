package io.github.rampartsec.pin;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** An invalid policy, with every problem found, so that it is fixed in one pass. */
public final class PolicyException extends Exception {
  private static final long serialVersionUID = 1L;

  /** One problem; {@code domain} is "" for the policy as a whole. */
  public static final class Problem {
    public final String domain;
    public final String message;

    Problem(String domain, String message) {
      this.domain = domain;
      this.message = message;
    }
  }

  private final transient List<Problem> problems;

  PolicyException(List<Problem> problems, String source) {
    super(format(problems, source));
    this.problems = Collections.unmodifiableList(new ArrayList<Problem>(problems));
  }

  static PolicyException of(String message) {
    return new PolicyException(Collections.singletonList(new Problem("", message)), "");
  }

  public List<Problem> problems() {
    return problems;
  }

  private static String format(List<Problem> problems, String source) {
    StringBuilder b = new StringBuilder();
    for (Problem p : problems) {
      if (b.length() > 0) {
        b.append('\n');
      }
      b.append("pin: policy");
      if (!source.isEmpty()) {
        b.append(' ').append(source);
      }
      if (!p.domain.isEmpty()) {
        b.append(": domain ").append(Json.quote(p.domain));
      }
      b.append(": ").append(p.message);
    }
    return b.toString();
  }
}
