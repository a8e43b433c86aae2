// Benchmarks in Go's format, so that benchstat reads them:
//
//   npm run bench > js.txt && benchstat js.txt
//
// Each benchmark warms up, then runs enough iterations for at least one
// second; the set runs BENCH_COUNT times (6 by default), like go test -count.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { Keys, useSignatureCheck, verifyBundle } from "../src/core/bundle.js";
import { nodeSignatureCheck } from "../src/node/crypto.js";
import { parseJSON } from "../src/core/json.js";
import { parsePolicy } from "../src/core/policy.js";
import { evaluate } from "../src/core/verify.js";
import { buildChains, toChainCert, trustAnchors } from "../src/node/chain.js";
import { PinVerifier } from "../src/node/verifier.js";

const dir = process.env.RAMPART_VECTORS ?? join(import.meta.dirname, "..", "..", "..", "testdata", "vectors");
const bundles = JSON.parse(readFileSync(join(dir, "bundles.json"), "utf8"));
const pki = JSON.parse(readFileSync(join(dir, "pki.json"), "utf8"));
const C = pki.certificates as Record<string, { pem: string; spki_pin: string; key_pem?: string }>;
const keys = Keys.parse(JSON.stringify(bundles.keys));
const byName = (n: string) => bundles.cases.find((c: { name: string }) => c.name === n);

function report(name: string, n: number, ns: number): void {
  console.log(`Benchmark${name}\t${n}\t${(ns / n).toFixed(1)} ns/op`);
}

function bench(name: string, f: () => void): void {
  for (let i = 0; i < 200; i++) f();
  for (let n = 1; ; ) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    const ns = Number(process.hrtime.bigint() - t0);
    if (ns >= 1e9) return report(name, n, ns);
    n = Math.max(n + 1, Math.min(n * 100, Math.ceil((n * 1.2e9) / Math.max(ns, 1))));
  }
}

async function benchAsync(name: string, f: () => Promise<void>): Promise<void> {
  for (let i = 0; i < 20; i++) await f();
  for (let n = 1; ; ) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await f();
    const ns = Number(process.hrtime.bigint() - t0);
    if (ns >= 1e9) return report(name, n, ns);
    n = Math.max(n + 1, Math.min(n * 100, Math.ceil((n * 1.2e9) / Math.max(ns, 1))));
  }
}

// The pin check of one handshake: a 3-certificate verified chain whose
// digests are cached (as after the first handshake with a server), the
// pin on the root (the last certificate looked at), and a mismatch (which
// builds the error naming the chain).
const host = "api.rampart.example";
const x509 = (n: string) => new X509Certificate(C[n]!.pem);
const chain = [x509("legit-leaf"), x509("legit-int"), x509("legit-root")].map(toChainCert);
const onRoot = parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: host, pins: [C["rogue-root"]!.spki_pin, C["legit-root"]!.spki_pin] }] }));
const rogue = parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: host, pins: [C["rogue-root"]!.spki_pin, C["rogue-leaf"]!.spki_pin] }] }));
const now = Date.now();
const ca = [C["legit-root"]!.pem, C["rogue-root"]!.pem];
const anchors = trustAnchors(ca);
const leafX = x509("legit-leaf"), intX = x509("legit-int");
const policyText = JSON.stringify(bundles.embedded_policy);
const es256 = byName("valid-es256").jws, es384 = byName("valid-es384").jws, eddsa = byName("valid-eddsa").jws;
const vnow = byName("valid-es256").now * 1000;

// A loopback TLS server for the full handshake, pinned and not.
const server = tls.createServer({ cert: C["legit-leaf"]!.pem + C["legit-int"]!.pem, key: C["legit-leaf"]!.key_pem });
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const port = (server.address() as { port: number }).port;
const verifier = new PinVerifier({ policy: onRoot, logger: null });
const handshake = (pinned: boolean) =>
  new Promise<void>((resolve, reject) => {
    const o = { host: "127.0.0.1", servername: host, port, ca };
    const s = pinned ? verifier.connect(o) : tls.connect(o);
    s.once("secureConnect", () => {
      s.destroy();
      resolve();
    });
    s.once("error", reject);
  });

console.log(`goos: ${os.platform()}\ngoarch: ${os.arch()}\npkg: @rampartsec/pin (node ${process.version})\ncpu: ${os.cpus()[0]?.model ?? "unknown"}`);
const runs = Number(process.env.BENCH_COUNT ?? 6);
for (let r = 0; r < runs; r++) {
  bench("PinCheck", () => {
    if (evaluate(onRoot, host, 443, chain, [chain], now).error) throw new Error("refused");
  });
  bench("PinCheckMismatch", () => {
    if (!evaluate(rogue, host, 443, chain, [chain], now).error) throw new Error("accepted");
  });
  // What the hook adds per handshake on Node besides Node's own work:
  // rebuilding the verified chain (link checks and digests cached by
  // fingerprint, as after the first handshake with a server) and the pin
  // check. The X509Certificate objects are Node's (getPeerX509Certificate
  // makes them); the whole handshake, pinned and not, is measured below.
  bench("NodeChainRebuildAndCheck", () => {
    const chains = buildChains(leafX, [intX], anchors, now).map((c) => c.map(toChainCert));
    if (evaluate(onRoot, host, 443, [leafX, intX].map(toChainCert), chains, now).error) throw new Error("refused");
  });
  // @noble/curves (React Native, Hermes), then node:crypto (Node.js).
  useSignatureCheck(null);
  bench("VerifyBundleES256", () => void verifyBundle(es256, keys, vnow));
  bench("VerifyBundleES384", () => void verifyBundle(es384, keys, vnow));
  bench("VerifyBundleEdDSA", () => void verifyBundle(eddsa, keys, vnow));
  useSignatureCheck(nodeSignatureCheck);
  bench("VerifyBundleES256NodeCrypto", () => void verifyBundle(es256, keys, vnow));
  bench("VerifyBundleES384NodeCrypto", () => void verifyBundle(es384, keys, vnow));
  bench("VerifyBundleEdDSANodeCrypto", () => void verifyBundle(eddsa, keys, vnow));
  bench("ParsePolicy", () => void parsePolicy(policyText));
  bench("ParseStrictJSON", () => void parseJSON(policyText));
  await benchAsync("TLSHandshakeLoopback", () => handshake(false));
  await benchAsync("TLSHandshakeLoopbackPinned", () => handshake(true));
}
server.close();
