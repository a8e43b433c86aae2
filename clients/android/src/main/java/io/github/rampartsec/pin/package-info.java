/**
 * Rampart certificate pinning for OkHttp on Android and the JVM.
 *
 * <p>{@link io.github.rampartsec.pin.RampartPinning} pins an OkHttp client
 * with a {@link io.github.rampartsec.pin.Policy}, on the chain the platform
 * verified; {@link io.github.rampartsec.pin.BundleUpdater} keeps the policy
 * on the newest signed pin bundle of Rampart's control plane;
 * {@link io.github.rampartsec.pin.Reports} sends RFC 7469 failure reports;
 * {@link io.github.rampartsec.pin.ClientConfig} reads the file
 * {@code rampart pin export --format rampart-client} writes. The decisions
 * are those of the Go package {@code github.com/rampartsec/rampart/pin},
 * checked on the cross-language vectors of {@code clients/testdata/vectors}.
 */
package io.github.rampartsec.pin;
