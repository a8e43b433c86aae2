// The six integration tests of the shared brief, against the live harness
// of internal/testing/clientharness (its configuration file is named by
// $RAMPART_HARNESS; the Go test TestJSClient always sets it).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync } from "node:fs";
import type { TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BundleError, Keys } from "../src/core/bundle.js";
import { parsePolicy, type Policy } from "../src/core/policy.js";
import type { ReportQueue } from "../src/core/report.js";
import { PinMismatchError } from "../src/core/verify.js";
import { nodeReportQueue } from "../src/node/report.js";
import { BundleUpdater } from "../src/node/updater.js";
import { PinVerifier } from "../src/node/verifier.js";
import { get, loopback } from "./helpers.js";

const file = process.env.RAMPART_HARNESS;
const skip = file ? false : "RAMPART_HARNESS is not set: these tests need the live harness (go test ./internal/testing/clientharness -run TestJSClient sets it; see README.md)";

interface Harness {
  roots_pem: string;
  pinned_url: string;
  rogue_url: string;
  appended_url: string;
  bundle_url: string;
  replay_bundle_url: string;
  publisher_url: string;
  bundle_name: string;
  embedded_policy: unknown;
  bundle_keys: unknown;
  pins: Record<string, string>;
}

let h: Harness;
let embedded: Policy;
let keys: Keys;
let reporter: ReportQueue;
let cache: string;
let client: { verifier: PinVerifier; updater: BundleUpdater };
let v1 = 0; // the version test 4 publishes

const API = "api.rampart.example";

async function newClient(url: string) {
  const agentOptions = { ca: h.roots_pem, lookup: loopback };
  const verifier = new PinVerifier({ policy: embedded, reporter, logger: null, agentOptions: { ...agentOptions, keepAlive: true } });
  const updater = new BundleUpdater({ url, name: h.bundle_name, keys, embedded, verifier, cacheFile: cache, agentOptions, logger: null });
  await updater.load();
  return { verifier, updater };
}

async function publish(path: "/publish" | "/replay", policy: unknown, version = 0): Promise<number> {
  const res = await fetch(h.publisher_url + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ policy, version }) });
  const text = await res.text();
  assert.equal(res.status, 201, `${path}: ${text}`);
  return JSON.parse(text).version;
}

async function waitReport(mode: string): Promise<void> {
  await reporter.flush();
  const deadline = Date.now() + 10000;
  for (;;) {
    const res = await fetch(`${h.publisher_url}/reports?domain=${API}`);
    const body = (await res.json()) as { groups?: { hostname: string; mode: string; reason: string }[] };
    if ((body.groups ?? []).some((g) => g.hostname === API && g.mode === mode && g.reason === "pin-mismatch")) return;
    if (Date.now() > deadline) assert.fail(`no ${mode} pin-mismatch report for ${API} in the control plane after 10 s: ${JSON.stringify(body.groups)} (reporter: ${JSON.stringify(reporter.stats)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  if (!file) return;
  h = JSON.parse(readFileSync(file, "utf8"));
  embedded = parsePolicy(JSON.stringify(h.embedded_policy));
  keys = Keys.parse(JSON.stringify(h.bundle_keys));
  // Reports go out unpinned, trusting the harness roots.
  reporter = nodeReportQueue({ requestOptions: { ca: h.roots_pem, lookup: loopback } });
  cache = join(mkdtempSync(join(tmpdir(), "rampart-harness-")), "bundle.jws");
  client = await newClient(h.bundle_url);
});

test("1. the rogue chain is refused, naming its pins", { skip }, async () => {
  const err = await get(h.rogue_url, client.verifier.agent).then(() => null, (e: Error) => e);
  assert.ok(err instanceof PinMismatchError, `want a pin mismatch, got ${err}`);
  for (const k of ["rogue_leaf", "rogue_int", "rogue_root"]) assert.ok(err.message.includes(h.pins[k]!), `the error names ${k} (${h.pins[k]}):\n${err.message}`);
});

test("2. the appended chain is refused, even pinned on the real CA", { skip }, async () => {
  const caPolicy = parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: API, pins: [h.pins.legit_int, h.pins.backup] }] }));
  const v = new PinVerifier({ policy: caPolicy, logger: null, agentOptions: { ca: h.roots_pem, lookup: loopback } });
  const err = await get(h.appended_url, v.agent).then(() => null, (e: Error) => e);
  assert.ok(err instanceof PinMismatchError, `want a pin mismatch, got ${err}`);
  const ok = await get(h.pinned_url, v.agent);
  assert.deepEqual([ok.status, ok.body], [200, "pinned"], "the same pins accept the real chain");
});

test("3. the report of the rogue chain reaches the control plane", { skip }, async () => {
  await waitReport("enforce");
  assert.ok(reporter.stats.sent >= 1);
});

test("4. a published bundle switches the pins without a restart", { skip }, async () => {
  const oldAgent = client.verifier.agent;
  const a = await get(h.pinned_url, oldAgent);
  assert.deepEqual([a.status, a.body], [200, "pinned"]);
  let pooled: TLSSocket | undefined;
  const b = await new Promise<{ body: string; reused: boolean }>((resolve, reject) => {
    import("node:https").then(({ default: https }) => {
      const req = https.get(h.pinned_url, { agent: oldAgent }, (res) => {
        pooled = res.socket as TLSSocket;
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ body, reused: req.reusedSocket }));
      });
      req.on("error", reject);
    });
  });
  assert.ok(b.reused && b.body === "pinned", "the second request reuses the pooled connection");
  v1 = await publish("/publish", { version: 1, domains: [{ domain: API, pins: [h.pins.rogue_leaf, h.pins.backup] }] });
  await client.updater.update();
  assert.equal(client.updater.state().version, v1);
  assert.equal(client.updater.state().source, "network");
  await new Promise((r) => setImmediate(r));
  assert.ok(pooled?.destroyed, "the pooled connection made under the old pins is closed");
  assert.notEqual(client.verifier.agent, oldAgent, "a fresh agent after the policy change");
  for (const agent of [client.verifier.agent, oldAgent]) {
    const err = await get(h.pinned_url, agent).then(() => null, (e: Error) => e);
    assert.ok(err instanceof PinMismatchError, `pinned_url after the switch: want a pin mismatch, got ${err}`);
  }
  const r = await get(h.rogue_url, client.verifier.agent);
  assert.deepEqual([r.status, r.body], [200, "rogue"]);
});

test("5. rollback is refused after a restart", { skip }, async () => {
  assert.ok(v1 > 1, "test 4 published a version");
  const restarted = await newClient(h.replay_bundle_url);
  assert.equal(restarted.updater.state().version, v1, "the cache file brings back the accepted version");
  assert.equal(restarted.updater.state().source, "cache");
  await publish("/replay", h.embedded_policy, v1 - 1);
  const err = await restarted.updater.update().then(() => null, (e: Error) => e);
  assert.ok(err instanceof BundleError && err.code === "rollback", `want a rollback refusal, got ${err}`);
  assert.equal(restarted.updater.state().version, v1);
  assert.deepEqual(restarted.verifier.policy.match(API)!.pins.map(String), [h.pins.rogue_leaf, h.pins.backup], "the policy in effect is still version N's");
});

test("6. report-only lets the request through and reports", { skip }, async () => {
  await publish("/publish", { version: 1, domains: [{ domain: API, mode: "report-only", pins: [h.pins.backup] }] });
  await client.updater.update();
  assert.equal(client.verifier.policy.match(API)!.mode, "report-only");
  const r = await get(h.rogue_url, client.verifier.agent);
  assert.deepEqual([r.status, r.body], [200, "rogue"]);
  await waitReport("report-only");
});
