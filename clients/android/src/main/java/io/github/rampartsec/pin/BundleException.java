package io.github.rampartsec.pin;

/** A refused bundle; {@link #code()} is the class of the refusal (the vectors' {@code error}). */
public final class BundleException extends Exception {
  private static final long serialVersionUID = 1L;

  /** The classes of refusal, in the order of checks of clients/testdata/vectors/README.md. */
  public enum Code {
    MALFORMED("malformed", "malformed"),
    UNKNOWN_KEY("unknown-key", "signed by an unknown key"),
    BAD_SIGNATURE("bad-signature", "bad signature"),
    EXPIRED("expired", "expired"),
    NOT_YET_VALID("not-yet-valid", "not yet valid"),
    WRONG_NAME("wrong-name", "wrong bundle name"),
    ROLLBACK("rollback", "rollback refused"),
    CONTROL_PLANE_NOT_PINNED(
        "control-plane-not-pinned",
        "the control plane is not pinned by the embedded policy (add an enforced rule for its host)"),
    /** The bundle could not be fetched (network, HTTP status): not a refusal of its content. */
    FETCH("fetch", "fetch failed");

    private final String id;
    private final String message;

    Code(String id, String message) {
      this.id = id;
      this.message = message;
    }

    /** The class as the vectors and the Go and JavaScript clients name it. */
    public String id() {
      return id;
    }
  }

  private final Code code;
  private final transient Bundle bundle;

  BundleException(Code code, String detail) {
    this(code, detail, null, null);
  }

  BundleException(Code code, String detail, Bundle bundle) {
    this(code, detail, bundle, null);
  }

  BundleException(Code code, String detail, Bundle bundle, Throwable cause) {
    super("bundle: " + code.message + ": " + detail, cause);
    this.code = code;
    this.bundle = bundle;
  }

  public Code code() {
    return code;
  }

  /** For EXPIRED and NOT_YET_VALID (and the updater's refusals): the authentic bundle; else null. */
  Bundle bundle() {
    return bundle;
  }
}
