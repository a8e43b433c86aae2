// Unit tests of the core: pins, policy validation, host matching, reports
// and their delivery, the configuration file, the updater's state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Pin, PinParseError } from "../src/core/pin.js";
import { canonicalHost, checkServerName, domainJSON, newPolicy, parsePolicy, PolicyError } from "../src/core/policy.js";
import { buildReport, DedupWindow, ReportQueue } from "../src/core/report.js";
import { chainCert, evaluate, failureKey, PinMismatchError, NoVerifiedChainError, type Failure } from "../src/core/verify.js";
import { parseClientConfig, ConfigError } from "../src/core/config.js";
import { Keys } from "../src/core/bundle.js";
import { formatIP, parseIP, unmap } from "../src/core/ip.js";
import { b64, b64url, utf8Decode, utf8Encode } from "../src/core/bytes.js";
import { readVectors } from "./helpers.js";
import { X509Certificate } from "node:crypto";

const pki = readVectors("pki.json");
const bundles = readVectors("bundles.json");
const C = pki.certificates as Record<string, { pem: string; spki_pin: string; cert_pin: string }>;
const der = (n: string) => new Uint8Array(new X509Certificate(C[n]!.pem).raw);
const P1 = "sha256/Webb/R1vyFKIZWQgfUOhwM1gtCoRIpWBrMCgK8yLdz8=";
const P2 = "sha256/qfi0Ufz7eF5vIJPG5dE29rP+V6fqr27A+Pubzu7iQzE=";

function problems(json: unknown): string[] {
  try {
    parsePolicy(typeof json === "string" ? json : JSON.stringify(json));
  } catch (e) {
    assert.ok(e instanceof PolicyError, String(e));
    return e.problems.map((p) => (p.domain ? `${p.domain}: ` : "") + p.message);
  }
  assert.fail("the policy was accepted");
}
const dom = (d: Record<string, unknown>) => ({ version: 1, domains: [{ domain: "api.example.com", pins: [P1, P2], ...d }] });

test("pins: both forms, canonical text, and Go's errors", () => {
  const p = Pin.parse(P1);
  assert.equal(p.kind, "spki");
  assert.equal(p.toString(), P1);
  assert.equal(Pin.fromCertificate(der("legit-leaf")).toString(), C["legit-leaf"]!.spki_pin);
  assert.equal(Pin.fingerprint(der("legit-leaf")).toString(), C["legit-leaf"]!.cert_pin);
  const hex = C["legit-leaf"]!.cert_pin.slice("cert-sha256:".length);
  assert.ok(Pin.parse("cert-sha256:" + hex.toUpperCase()).equals(Pin.parse(C["legit-leaf"]!.cert_pin)));
  const colons = hex.toUpperCase().match(/../g)!.join(":");
  assert.ok(Pin.parse("cert-sha256:" + colons).equals(Pin.parse(C["legit-leaf"]!.cert_pin)));
  const kinds: [string, string][] = [
    ["sha1/abc", "prefix"],
    ["sha256/" + P1.slice(7, -2) + "B=", "encoding"], // non-zero unused bits
    ["sha256/AAAA", "length"],
    ["sha256/" + "a".repeat(64), "length"],
    ["sha256/" + P1.slice(7) + "\n", "encoding"],
    ["cert-sha256:" + hex.slice(2), "length"],
    ["cert-sha256:zz" + hex.slice(2), "encoding"],
    ["cert-sha256:" + colons.slice(1), "encoding"],
  ];
  for (const [s, kind] of kinds) {
    assert.throws(() => Pin.parse(s), (e: unknown) => e instanceof PinParseError && e.kind === kind, s);
  }
  assert.match((() => { try { Pin.parse("sha256/" + "a".repeat(64)); } catch (e) { return (e as Error).message; } return ""; })(), /looks like a hex SHA-256/);
});

test("policy validation: every problem, with Go's messages", () => {
  assert.deepEqual(problems(dom({ pins: [P1] })), [
    'api.example.com: enforce mode needs at least two distinct pins: add a backup pin (the pin of a spare key kept offline, see `rampart pin keygen`), or set allow_single_pin: true to accept the risk',
  ]);
  assert.deepEqual(problems(dom({ pins: [P1, P1] })), [`api.example.com: ${P1}: pin listed twice; a backup pin must be a different key`]);
  assert.deepEqual(problems(dom({ pins: [] })), ["api.example.com: no pins"]);
  assert.match(problems(dom({ require_scts: true }))[0]!, /require_scts is not supported by this client/);
  assert.match(problems(dom({ mode: "audit" }))[0]!, /mode "audit": want "enforce" or "report-only"/);
  assert.match(problems(dom({ expires: "2026-02-30" }))[0]!, /want a date as YYYY-MM-DD/);
  assert.match(problems(dom({ report_uri: "http://collector.example/r" }))[0]!, /must go over https/);
  assert.match(problems(dom({ report_uri: "https://user:pw@collector.example/r" }))[0]!, /carries credentials/);
  assert.match(problems(dom({ report_uri: "https://api.example.com/r" }))[0]!, /report loop/);
  assert.match(problems(dom({ domain: "example.com", include_subdomains: true, report_uri: "https://r.example.com/x" }))[0]!, /report loop/);
  assert.match(problems(dom({ domain: "*.example.com" }))[0]!, /wildcards are not allowed/);
  assert.match(problems(dom({ domain: "https://api.example.com" }))[0]!, /without scheme, port or path/);
  assert.match(problems(dom({ domain: "bücher.example" }))[0]!, /punycode/);
  assert.match(problems(dom({ domain: "a..b" }))[0]!, /empty label/);
  assert.match(problems(dom({ domain: "10.0.0.1", include_subdomains: true }))[0]!, /IP address/);
  assert.match(problems(dom({ domain: "fe80::1%eth0" }))[0]!, /zone/);
  assert.match(problems(dom({ pins: [P1, { pin: P2, role: "root" }] }))[0]!, /role "root": want leaf, backup or ca/);
  assert.match(problems(dom({ pins: [P1, "sha1/x"] }))[0]!, /unknown pin prefix/);
  // Whole-file errors.
  assert.deepEqual(problems({ version: 2, domains: [] }), ["version 2: want version: 1"]);
  assert.deepEqual(problems({ domains: [] }), ["version 0: want version: 1"]);
  assert.deepEqual(problems({ version: 1, domains: [] }), ["no domains: a policy pins at least one domain"]);
  assert.match(problems('{"version":1.0,"domains":[]}')[0]!, /want an integer/);
  assert.match(problems('{"version":1,"version":1,"domains":[]}')[0]!, /appears twice/);
  assert.match(problems({ version: 1, domains: [{ domain: "a.example", pins: [P1, P2], extra: 1 }] })[0]!, /field extra is not a domain field/);
  assert.match(problems({ version: 1, extra: 1, domains: [] })[0]!, /field extra is not a policy field/);
  assert.match(problems({ version: 1, domains: [{ domain: "a.example", pins: [P1, P2], include_subdomains: "true" }] })[0]!, /want true or false, got a string/);
  assert.match(problems({ version: 1, ct_logs: [{ key: "not base64!", operator: "Google" }], domains: [{ domain: "a.example", pins: [P1, P2] }] })[0]!, /not base64/);
  // Several rules, several problems, all reported; duplicates.
  const many = problems({ version: 1, domains: [{ domain: "a.example", pins: [P1] }, { domain: "b.example", pins: [] }, { domain: "A.example.", pins: [P1, P2] }, { domain: "a.example", pins: [P1, P2] }] });
  assert.equal(many.length, 3, many.join("\n"));
  assert.ok(many.some((m) => m.startsWith("a.example: listed twice")));
  // What is accepted, normalized as Go writes it.
  const p = parsePolicy(JSON.stringify({ version: 1, report_uri: "http://127.0.0.1:9/r", ct_logs: [{ key: "AAAA", operator: " Google ", description: "x" }], domains: [{ domain: "API.Example.COM.", mode: "report-only", pins: [P1], expires: "2027-06-30" }, { domain: "::FFFF:10.0.0.1", pins: [{ pin: P1, role: "leaf" }, P2] }] }));
  assert.deepEqual(p.toJSON(), {
    version: 1,
    report_uri: "http://127.0.0.1:9/r",
    ct_logs: [{ key: "AAAA", operator: "Google", description: "x" }],
    domains: [
      { domain: "api.example.com", include_subdomains: false, mode: "report-only", expires: "2027-06-30", pins: [P1], report_uri: "http://127.0.0.1:9/r" },
      { domain: "10.0.0.1", include_subdomains: false, mode: "enforce", pins: [{ pin: P1, role: "leaf" }, P2], report_uri: "http://127.0.0.1:9/r" },
    ],
  });
  assert.equal(p.domains[0]!.expiresAt, Date.UTC(2027, 6, 1), "the pins hold through the end of the date, UTC");
});

test("host matching: exact rule, else the nearest parent with include_subdomains", () => {
  const p = newPolicy("", [
    { name: "example.com", includeSubdomains: true, pins: [Pin.parse(P1), Pin.parse(P2)] },
    { name: "api.example.com", pins: [Pin.parse(P1), Pin.parse(P2)], mode: "report-only" },
    { name: "noinc.example.com", pins: [Pin.parse(P1), Pin.parse(P2)] },
    { name: "2001:db8::1", pins: [Pin.parse(P1), Pin.parse(P2)] },
    { name: "10.1.2.3", pins: [Pin.parse(P1), Pin.parse(P2)] },
  ]);
  const m = (h: string) => p.match(h)?.name ?? null;
  assert.equal(m("example.com"), "example.com");
  assert.equal(m("a.b.example.com"), "example.com");
  assert.equal(m("API.Example.Com.."), "api.example.com");
  assert.equal(m("x.api.example.com"), "example.com", "api's rule does not include subdomains; the parent's does");
  assert.equal(m("x.noinc.example.com"), "example.com");
  assert.equal(m("example.org"), null);
  assert.equal(m("notexample.com"), null);
  assert.equal(m("[2001:DB8:0:0:0:0:0:1]"), "2001:db8::1");
  assert.equal(m("::ffff:10.1.2.3"), "10.1.2.3");
  assert.equal(m("[::ffff:a01:203]."), "10.1.2.3");
  assert.equal(m("x.10.1.2.3"), null);
  const q = newPolicy("", [{ name: "example.com", pins: [Pin.parse(P1), Pin.parse(P2)] }]);
  assert.equal(q.match("a.example.com"), null, "a parent without include_subdomains does not apply to subdomains");
  assert.throws(() => checkServerName("a..example.com"));
  assert.equal(canonicalHost("[::1]").host, "::1");
});

test("IP addresses as netip parses and prints them", () => {
  const f = (s: string) => { const a = parseIP(s); return a ? formatIP(unmap(a)) : null; };
  assert.equal(f("2001:0db8:0000:0000:0001:0000:0000:0001"), "2001:db8::1:0:0:1");
  assert.equal(f("::"), "::");
  assert.equal(f("1::"), "1::");
  assert.equal(f("::1.2.3.4"), "::102:304");
  assert.equal(f("0:0:0:0:0:ffff:1.2.3.4"), "1.2.3.4");
  for (const bad of ["1.2.3", "01.2.3.4", "256.1.1.1", "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", "g::1", "1.2.3.4.5"]) assert.equal(f(bad), null, bad);
});

test("base64 and UTF-8 are strict", () => {
  assert.equal(b64url.decode("AB"), null, "unused bits set");
  assert.deepEqual(b64url.decode("AA"), new Uint8Array([0]));
  assert.equal(b64url.decode("AA=="), null);
  assert.equal(b64.decode("AA"), null, "standard base64 is padded");
  assert.equal(b64.decode("A==="), null);
  for (let i = 0; i < 200; i++) {
    const b = Uint8Array.from({ length: i % 37 }, (_, k) => (k * 131 + i) & 255);
    assert.deepEqual(b64.decode(b64.encode(b)), b);
    assert.deepEqual(b64url.decode(b64url.encode(b)), b);
    assert.equal(b64.encode(b), Buffer.from(b).toString("base64"));
  }
  const s = "aé€😀";
  assert.equal(utf8Decode(utf8Encode(s)), s);
  assert.equal(utf8Decode(new Uint8Array([0xc0, 0x80])), null, "overlong");
  assert.equal(utf8Decode(new Uint8Array([0xed, 0xa0, 0x80])), null, "surrogate");
  assert.equal(utf8Decode(new Uint8Array([0xe2, 0x82])), null, "truncated");
});

function failure(over: Partial<Failure> = {}): Failure {
  const d = parsePolicy(JSON.stringify({ version: 1, report_uri: "https://reports.example/r", domains: [{ domain: "api.rampart.example", pins: [P1, C["legit-leaf"]!.cert_pin], expires: "2030-01-01" }] })).domains[0]!;
  const leaf = chainCert(der("rogue-leaf"));
  return { time: Date.UTC(2026, 10, 25, 12), host: "API.rampart.example", port: 443, domain: d, reason: "pin-mismatch", served: [leaf], chains: [[leaf, chainCert(der("rogue-int")), chainCert(der("rogue-root"))]], ...over };
}

test("the report of a failure has RFC 7469's members and Rampart's", () => {
  const r = buildReport(failure());
  assert.deepEqual(Object.keys(r), ["date-time", "hostname", "port", "effective-expiration-date", "include-subdomains", "noted-hostname", "served-certificate-chain", "validated-certificate-chain", "known-pins", "rampart-mode", "rampart-reason", "rampart-library-version", "rampart-known-cert-pins"]);
  assert.equal(r["date-time"], "2026-11-25T12:00:00Z");
  assert.equal(r["effective-expiration-date"], "2030-01-02T00:00:00Z");
  assert.deepEqual(r["known-pins"], [`pin-sha256="${P1.slice(7)}"`]);
  assert.deepEqual(r["rampart-known-cert-pins"], [C["legit-leaf"]!.cert_pin]);
  assert.equal((r["validated-certificate-chain"] as string[]).length, 3);
  assert.equal(new X509Certificate((r["served-certificate-chain"] as string[])[0]!).fingerprint256, new X509Certificate(C["rogue-leaf"]!.pem).fingerprint256);
  const noCert = buildReport(failure({ domain: parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: "a.example", pins: [P1, P2] }] })).domains[0]! }));
  assert.equal("rampart-known-cert-pins" in noCert, false);
});

test("the failure key changes with what a report says, not with the time", () => {
  const a = failure();
  assert.equal(failureKey(a), failureKey(failure({ time: a.time + 1000 })));
  for (const o of [{ host: "b" }, { port: 444 }, { reason: "pin-set-expired" as const }, { served: [] }, { chains: [] }]) {
    assert.notEqual(failureKey(a), failureKey(failure(o)), JSON.stringify(Object.keys(o)));
  }
});

test("the mismatch error names every certificate of the verified chains and the pins", () => {
  const f = failure();
  const p = parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: "api.rampart.example", pins: [P1, C["legit-leaf"]!.cert_pin] }] }));
  const d = evaluate(p, "API.rampart.example", 443, f.served, f.chains, Date.now());
  assert.ok(d.error instanceof PinMismatchError);
  const msg = d.error.message;
  assert.match(msg, /^pin: certificate pinning failure for API.rampart.example \(rule api.rampart.example\): no pin matches the verified chain\n  verified chain:\n/);
  for (const n of ["rogue-leaf", "rogue-int", "rogue-root"]) assert.ok(msg.includes(C[n]!.spki_pin + ": "), n);
  assert.ok(msg.includes("CN=api.rampart.example"));
  assert.ok(msg.includes("\n      cert-sha256:"), "certificate fingerprints when the rule has certificate pins");
  assert.ok(msg.endsWith(`\n  pinned:\n    ${P1}\n    ${C["legit-leaf"]!.cert_pin}`));
  const none = evaluate(p, "api.rampart.example", 443, f.served, [], Date.now());
  assert.ok(none.error instanceof NoVerifiedChainError);
  assert.equal(none.failure?.reason, "no-verified-chain");
  const ro = parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: "api.rampart.example", mode: "report-only", pins: [P1] }] }));
  assert.equal(evaluate(ro, "api.rampart.example", 443, f.served, [], Date.now()).error, undefined);
});

test("report delivery: deduplicated for 24 h per failure and URI, bounded, retried after a failed send", async () => {
  let now = 0;
  const sent: string[] = [];
  let fail = false;
  const q = new ReportQueue({ now: () => now, queueSize: 2, send: async (uri, body) => {
    if (fail) throw new Error("down");
    sent.push(uri + " " + JSON.parse(body).hostname);
  } });
  q.report(failure());
  q.report(failure({ time: 5 }));
  await q.flush();
  assert.deepEqual(sent, ["https://reports.example/r API.rampart.example"]);
  assert.equal(q.stats.duplicates, 1);
  now += 24 * 3600 * 1000;
  q.report(failure());
  await q.flush();
  assert.equal(sent.length, 2, "again after 24 hours");
  fail = true;
  q.report(failure({ port: 1 }));
  await q.flush();
  assert.equal(q.stats.failed, 1);
  fail = false;
  q.report(failure({ port: 1 }));
  await q.flush();
  assert.equal(sent.length, 3, "a failed report may be sent again");
  for (let i = 0; i < 5; i++) q.report(failure({ port: 100 + i }));
  assert.equal(q.stats.dropped, 3, "the queue holds two");
  await q.flush();
  const noURI = parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: "a.example", pins: [P1, P2] }] })).domains[0]!;
  q.report(failure({ domain: noURI }));
  assert.equal(q.stats.noURI, 1);
  const w = new DedupWindow(1000, 2);
  assert.ok(w.first("a", 0) && w.first("b", 0) && w.first("c", 0));
  assert.equal(w.size, 2, "bounded");
  assert.ok(w.first("a", 1), "the oldest was evicted");
});

test("the configuration file of rampart pin export --format rampart-client", () => {
  const doc = { format: "rampart-client/1", comment: "Generated", policy: bundles.embedded_policy, bundle_keys: bundles.keys, bundle_url: bundles.url, bundle_name: "mobile", min_version: 7 };
  const c = parseClientConfig(JSON.stringify(doc));
  assert.equal(c.minVersion, 7);
  assert.equal(c.bundleKeys!.size, 3);
  assert.deepEqual(c.policy.domains.map(domainJSON).map((d) => d.domain), ["cp.rampart.example", "api.rampart.example", "pay.rampart.example"]);
  const bad: [unknown, RegExp][] = [
    [{ ...doc, format: "other" }, /format/],
    [{ ...doc, extra: 1 }, /not a configuration member/],
    [{ ...doc, bundle_url: "https://unpinned.example/v1/bundles/mobile" }, /no rule for unpinned.example/],
    [{ ...doc, bundle_url: "http://cp.rampart.example/x" }, /https/],
    [{ ...doc, bundle_keys: undefined }, /needs bundle_keys/],
    [{ ...doc, bundle_name: "Mobile" }, /bundle name/],
    [{ ...doc, min_version: 1.5 }, /min_version/],
    [{ ...doc, policy: { ...bundles.embedded_policy, domains: [{ domain: "x.example", pins: [P1, P2], require_scts: true }] } }, /require_scts/],
    [{ format: "rampart-client/1", policy: bundles.embedded_policy, min_version: 3 }, /need bundle_url/],
  ];
  for (const [d, re] of bad) assert.throws(() => parseClientConfig(JSON.stringify(d)), (e: unknown) => e instanceof ConfigError && re.test(e.message), re.source);
  const keysOnly = parseClientConfig(JSON.stringify({ format: "rampart-client/1", policy: bundles.embedded_policy, bundle_keys: bundles.keys }));
  assert.equal(keysOnly.bundleURL, "");
});

test("bundle keys: thumbprints computed from the key, private and foreign keys refused", () => {
  const k = Keys.parse(JSON.stringify(bundles.keys));
  assert.deepEqual(k.ids(), bundles.keys.keys.map((j: { kid: string }) => j.kid).sort());
  const ec = bundles.keys.keys.find((j: { crv: string }) => j.crv === "P-256");
  assert.throws(() => Keys.parse(JSON.stringify({ ...ec, kid: "forged" })), /RFC 7638 thumbprint/);
  assert.throws(() => Keys.parse(JSON.stringify({ ...ec, d: "AAAA" })), /private key/);
  assert.throws(() => Keys.parse(JSON.stringify({ ...ec, alg: "ES384" })), /signs with ES256/);
  assert.throws(() => Keys.parse(JSON.stringify({ ...ec, use: "enc" })), /want sig/);
  assert.throws(() => Keys.parse(JSON.stringify({ ...ec, y: ec.x })), /not a point/);
  assert.throws(() => Keys.parse(JSON.stringify({ kty: "RSA", n: "AQAB", e: "AQAB" })), /not accepted/);
  assert.throws(() => Keys.parse(JSON.stringify({ kty: "oct", k: "AQAB" })), /symmetric/);
  assert.throws(() => Keys.parse('{"keys":[]}'), /empty JWK Set/);
  const { kid: _kid, ...noKid } = ec;
  assert.equal(Keys.parse(JSON.stringify(noKid)).ids()[0], ec.kid, "the kid is the thumbprint, with or without a kid member");
});

test("the core and the React Native adapter import nothing from Node.js (they run on Hermes)", async () => {
  const { readdirSync, readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  for (const sub of ["core", "react-native"]) {
    const dir = join(import.meta.dirname, "..", "src", sub);
    for (const f of readdirSync(dir).filter((x) => x.endsWith(".js"))) {
      const text = readFileSync(join(dir, f), "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
      const imports = [...text.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1]!);
      for (const i of imports) assert.ok(i.startsWith(".") && !i.includes("/node/") || i.startsWith("@noble/"), `${sub}/${f} imports ${i}`);
      assert.ok(!/\bBuffer\b|\bprocess\.|\brequire\(/.test(text), `${sub}/${f} uses a Node global`);
    }
  }
});
