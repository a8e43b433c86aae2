package io.github.rampartsec.pin;

/** The time, in milliseconds since the epoch (without java.time, which Android has only from API 26). */
public interface Clock {
  /** Now, in milliseconds since the epoch. */
  long now();

  /** System.currentTimeMillis. */
  Clock SYSTEM =
      new Clock() {
        @Override
        public long now() {
          return System.currentTimeMillis();
        }
      };
}
