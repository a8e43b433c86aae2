package io.github.rampartsec.pin;

/** Receives pin failures, in both modes. {@link #report} must not block. */
public interface Reporter {
  void report(Failure f);
}
