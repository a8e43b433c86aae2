// The React Native adapter: initializeSslPinning's options exactly as the
// Go export writes them (pin/export/testdata/react-native.golden), and the
// re-initialisation after a verified bundle, with the library injected.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Keys } from "../src/core/bundle.js";
import { parsePolicy } from "../src/core/policy.js";
import { ExportError, ReactNativePinning, toSslPinningOptions, type SslPinningOptions } from "../src/react-native/index.js";
import { readVectors, vectorsDir } from "./helpers.js";

// pin/export/testdata/policy.yaml, as JSON.
const goldenPolicy = {
  version: 1,
  report_uri: "https://reports.example.net/pins",
  domains: [
    { domain: "api.example.com", expires: "2027-06-30", pins: [{ pin: "sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=", role: "leaf" }, { pin: "sha256/ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA=", role: "backup" }] },
    { domain: "payments.example.org", include_subdomains: true, pins: [{ pin: "sha256/PqGpvcjLYUvUNw92652/zA+RKtSDHYGEtBPY8X9aqHk=", role: "ca" }, { pin: "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", role: "ca" }] },
    { domain: "beta.example.com", mode: "report-only", pins: ["sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w="], report_uri: "https://reports.example.net/beta" },
  ],
};

function golden(): { options: SslPinningOptions; warnings: string[] } {
  const text = readFileSync(join(vectorsDir, "..", "..", "..", "pin", "export", "testdata", "react-native.golden"), "utf8");
  const lit = text.slice(text.indexOf("export const pinningOptions = ") + "export const pinningOptions = ".length, text.indexOf("};") + 1);
  const json = lit.replace(/([{,]\s*)([A-Za-z]+):/g, '$1"$2":').replace(/,(\s*[}\]])/g, "$1");
  return { options: JSON.parse(json), warnings: text.split("-- warnings --\n")[1]!.trim().split("\n") };
}

test("toSslPinningOptions writes what rampart pin export --format react-native writes", () => {
  const warnings: string[] = [];
  const got = toSslPinningOptions(parsePolicy(JSON.stringify(goldenPolicy)), (w) => warnings.push(w));
  const want = golden();
  assert.deepEqual(got, want.options);
  assert.deepEqual(Object.keys(got), Object.keys(want.options), "in the policy's order");
  assert.deepEqual(warnings, want.warnings);
});

test("toSslPinningOptions refuses what the library cannot express", () => {
  const P = ["sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=", "sha256/ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA="];
  const cert = "cert-sha256:" + "ab".repeat(32);
  const cases: [unknown[], RegExp][] = [
    [[{ domain: "a.example", pins: [P[0], cert] }], /certificate fingerprint/],
    [[{ domain: "a.example", pins: [P[0]], allow_single_pin: true }], /at least two pins/],
    [[{ domain: "10.0.0.1", pins: P }], /IP addresses/],
    [[{ domain: "example", include_subdomains: true, pins: P }], /public suffix/],
    [[{ domain: "example.com", include_subdomains: true, pins: P }, { domain: "beta.example.com", mode: "report-only", pins: P }], /cannot exempt it from rule example.com/],
  ];
  for (const [domains, re] of cases) {
    assert.throws(() => toSslPinningOptions(parsePolicy(JSON.stringify({ version: 1, domains }))), (e: unknown) => e instanceof ExportError && re.test(e.message), re.source);
  }
  // A report-only rule under a report-only parent is simply left out.
  const ok = toSslPinningOptions(parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: "example.com", include_subdomains: true, mode: "report-only", pins: P }, { domain: "beta.example.com", mode: "report-only", pins: P }] })));
  assert.deepEqual(ok, {});
});

test("ReactNativePinning re-initialises the pins after a verified bundle, and keeps the control plane on its embedded rule", async () => {
  const v = readVectors("bundles.json");
  const byName = (n: string) => v.cases.find((c: { name: string }) => c.name === n);
  const calls: SslPinningOptions[] = [];
  const store = new Map<string, string>();
  const storage = { getItem: async (k: string) => store.get(k) ?? null, setItem: async (k: string, x: string) => void store.set(k, x) };
  const embedded = parsePolicy(JSON.stringify(v.embedded_policy));
  const keys = Keys.parse(JSON.stringify(v.keys));
  const now = () => byName("valid-es256").now * 1000;
  const library = { initializeSslPinning: async (o: SslPinningOptions) => void calls.push(o) };
  const rn = new ReactNativePinning({ library, embedded, keys, name: v.name, minVersion: v.min_version, url: v.url, storage, now });
  await rn.start();
  assert.equal(calls.length, 1);
  assert.deepEqual(Object.keys(calls[0]!), ["cp.rampart.example", "api.rampart.example", "pay.rampart.example"]);
  assert.equal(await rn.applyBundle(byName("valid-es256").jws), true);
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[1]!["api.rampart.example"]!.publicKeyHashes, byName("valid-es256").expect.effective_domains[1].pins.map((p: string) => p.slice(7)));
  assert.equal(calls[1]!["new.rampart.example"]!.expirationDate, "2027-07-01");
  assert.equal(await rn.applyBundle(byName("valid-es256").jws), false, "the same bundle changes nothing");
  assert.equal(calls.length, 2);
  await assert.rejects(rn.applyBundle(byName("bad-signature").jws), /bad signature/);
  assert.equal(calls.length, 2, "a refused bundle does not re-initialise");
  // A restart reads the stored bundle: the floor survives.
  const rn2 = new ReactNativePinning({ library, embedded, keys, name: v.name, minVersion: v.min_version, url: v.url, storage, now });
  await rn2.start();
  assert.equal(rn2.state().version, 3);
  assert.equal(rn2.state().source, "cache");
  // A bundle that replaces the control plane's rule does not move the control plane off its embedded pins.
  const cpRule = toSslPinningOptions(embedded)["cp.rampart.example"];
  assert.deepEqual(rn2.pinningOptions()["cp.rampart.example"], cpRule);
  // update() with an injected fetch, If-None-Match after the first answer.
  const seen: Record<string, string>[] = [];
  const fetchImpl = async (_url: string, init: { headers: Record<string, string> }) => {
    seen.push(init.headers);
    const jws = byName("newer-version").jws;
    return seen.length === 1 ? { status: 200, text: async () => jws, headers: { get: () => '"v5"' } } : { status: 304, text: async () => "", headers: { get: () => null } };
  };
  assert.equal(await rn2.update(fetchImpl), true);
  assert.equal(rn2.state().version, 5);
  assert.equal(await rn2.update(fetchImpl), false);
  assert.equal(seen[1]!["If-None-Match"], '"v5"');
});
