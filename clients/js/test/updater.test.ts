// The Node bundle updater against a local control plane (https, the
// vectors' certificates) serving bundles signed here with jose.
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { lstatSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync, chmodSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CompactSign, exportJWK, generateKeyPair } from "jose";
import { BundleError, Keys } from "../src/core/bundle.js";
import { parsePolicy } from "../src/core/policy.js";
import { PinMismatchError } from "../src/core/verify.js";
import { BundleUpdater } from "../src/node/updater.js";
import { PinVerifier } from "../src/node/verifier.js";
import { loopback, readVectors } from "./helpers.js";

const pki = readVectors("pki.json");
const C = pki.certificates as Record<string, { pem: string; spki_pin: string; key_pem?: string }>;
const ca = [C["legit-root"]!.pem, C["rogue-root"]!.pem];
const CP = "rampart.example";
const legit = [C["legit-leaf"]!.spki_pin, C["renewed-leaf"]!.spki_pin];
const rogue = [C["rogue-leaf"]!.spki_pin, C["renewed-leaf"]!.spki_pin];
const embeddedJSON = { version: 1, domains: [{ domain: CP, pins: legit }, { domain: "api.rampart.example", pins: legit }] };
const embedded = parsePolicy(JSON.stringify(embeddedJSON));

const { privateKey, publicKey } = await generateKeyPair("ES256");
const jwk = await exportJWK(publicKey);
const keys = Keys.parse(JSON.stringify({ keys: [jwk] }));
const kid = keys.ids()[0]!;

async function sign(version: number, policy: unknown, iat: number, exp: number, name = "mobile"): Promise<string> {
  const payload = new TextEncoder().encode(JSON.stringify({ bundle: name, version, iat, exp, policy }));
  return new CompactSign(payload).setProtectedHeader({ alg: "ES256", kid, typ: "rampart-pin-bundle+jws" }).sign(privateKey);
}

async function controlPlane(chain = ["legit-leaf", "legit-int"]) {
  const state = { jws: "", etag: '"1"', requests: [] as Record<string, string | string[] | undefined>[] };
  const s = https.createServer({ cert: chain.map((n) => C[n]!.pem).join(""), key: C[chain[0]!]!.key_pem }, (req, res) => {
    state.requests.push(req.headers);
    if (req.headers["if-none-match"] === state.etag) {
      res.writeHead(304).end();
      return;
    }
    res.writeHead(200, { "Content-Type": "application/jose", ETag: state.etag }).end(state.jws + "\n");
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const url = `https://${CP}:${(s.address() as { port: number }).port}/v1/bundles/mobile`;
  return { state, url, close: () => { s.closeAllConnections(); s.close(); } };
}

const t0 = Math.floor(Date.now() / 1000);
const tmp = () => mkdtempSync(join(tmpdir(), "rampart-upd-"));
function updater(url: string, o: Partial<ConstructorParameters<typeof BundleUpdater>[0]> = {}) {
  const verifier = new PinVerifier({ policy: embedded, logger: null });
  const u = new BundleUpdater({ url, name: "mobile", keys, embedded, verifier, agentOptions: { ca, lookup: loopback }, logger: null, ...o });
  return { u, verifier };
}

test("fetches, applies and caches a bundle; If-None-Match afterwards; the cache file is 0600, written atomically", async () => {
  const cp = await controlPlane();
  try {
    const dir = tmp();
    const cacheFile = join(dir, "bundle.jws");
    const { u, verifier } = updater(cp.url, { cacheFile });
    cp.state.jws = await sign(4, { version: 1, domains: [{ domain: "api.rampart.example", pins: rogue }] }, t0, t0 + 3600);
    await u.update();
    assert.equal(u.state().version, 4);
    assert.equal(cp.state.requests[0]!.accept, "application/jose");
    assert.equal(cp.state.requests[0]!["if-none-match"], undefined);
    assert.deepEqual(verifier.policy.match("api.rampart.example")!.pins.map(String), rogue);
    assert.equal(statSync(cacheFile).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ["bundle.jws"], "no temporary file left");
    await u.update();
    assert.equal(cp.state.requests[1]!["if-none-match"], '"1"');
    assert.equal(u.state().notModified, 1);
    assert.equal(u.state().version, 4);
  } finally {
    cp.close();
  }
});

test("the control plane is pinned by the embedded policy alone", async () => {
  const cp = await controlPlane(["rogue-leaf", "rogue-int"]);
  try {
    const { u } = updater(cp.url);
    // A pushed bundle that pins the control plane's host to the rogue key
    // changes the application's pins, never the control plane connection's.
    await u.apply(await sign(3, { version: 1, domains: [{ domain: CP, pins: rogue }] }, t0, t0 + 3600));
    const err = await u.update().then(() => null, (e: Error) => e);
    assert.ok(err && (err as Error & { cause?: unknown }).cause instanceof PinMismatchError, `want the rogue control plane refused, got ${err}`);
    assert.equal(u.state().consecutiveFailures, 1);
  } finally {
    cp.close();
  }
});

test("refuses to run when the control plane's host is not enforced by the embedded policy", async () => {
  for (const p of [
    { version: 1, domains: [{ domain: "api.rampart.example", pins: legit }] },
    { version: 1, domains: [{ domain: CP, mode: "report-only", pins: legit }] },
  ]) {
    const e = parsePolicy(JSON.stringify(p));
    assert.throws(() => new BundleUpdater({ url: `https://${CP}/x`, name: "mobile", keys, embedded: e, verifier: new PinVerifier({ policy: e, logger: null }), logger: null }), (x: unknown) => x instanceof BundleError && x.code === "control-plane-not-pinned");
  }
  assert.throws(() => updater(`http://${CP}/x`), /https/);
  // An expired embedded rule: no fetch at all.
  const cp = await controlPlane();
  try {
    const e = parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: CP, pins: legit, expires: "2020-01-01" }] }));
    const u = new BundleUpdater({ url: cp.url, name: "mobile", keys, embedded: e, verifier: new PinVerifier({ policy: e, logger: null }), agentOptions: { ca, lookup: loopback }, logger: null });
    await assert.rejects(u.update(), (x: unknown) => x instanceof BundleError && x.code === "control-plane-not-pinned");
    assert.equal(cp.state.requests.length, 0);
  } finally {
    cp.close();
  }
});

test("falls back to the embedded policy when the bundle in effect expires; backoff doubles from 5 s with jitter", async () => {
  let now = t0 * 1000;
  const sleeps: number[] = [];
  const ac = new AbortController();
  const { u, verifier } = updater(`https://${CP}:1/x`, {
    now: () => now,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
      if (sleeps.length >= 4) ac.abort();
    },
  });
  await u.apply(await sign(3, { version: 1, domains: [{ domain: "api.rampart.example", pins: rogue }] }, t0, t0 + 7));
  assert.notEqual(verifier.policy, embedded);
  // Port 1 refuses connections: every update fails, and the waits back off,
  // cut short by the bundle's expiry.
  await u.run(ac.signal);
  assert.equal(verifier.policy, embedded, "the embedded policy applies again once the bundle expired");
  assert.equal(u.state().version, 0);
  assert.ok(sleeps[0]! >= 4000 && sleeps[0]! <= 6000, `first wait ~5 s: ${sleeps}`);
  assert.ok(u.state().consecutiveFailures >= 2);
  for (let n = 1; n <= 6; n++) {
    const want = 5000 * 2 ** (n - 1);
    for (let i = 0; i < 20; i++) {
      const d = u.backoff(n);
      assert.ok(d >= want * 0.8 - 1 && d <= want * 1.2 + 1, `backoff(${n}) = ${d}`);
    }
  }
  const capped = updater(`https://${CP}/x`, { maxBackoff: 30000 }).u;
  for (let i = 0; i < 20; i++) assert.ok(capped.backoff(10) <= 30000);
});

test("a cache file others could have written is refused, and gives no floor", async () => {
  const jws = await sign(9, { version: 1, domains: [{ domain: "api.rampart.example", pins: rogue }] }, t0, t0 + 3600);
  const dir = tmp();
  const file = join(dir, "bundle.jws");
  writeFileSync(file, jws, { mode: 0o600 });
  chmodSync(file, 0o664);
  let { u } = updater(`https://${CP}/x`, { cacheFile: file });
  await u.load();
  assert.match(u.state().cacheError, /writable by group or others/);
  assert.equal(u.state().version, 0);
  const link = join(dir, "link.jws");
  chmodSync(file, 0o600);
  symlinkSync(file, link);
  assert.ok(lstatSync(link).isSymbolicLink());
  ({ u } = updater(`https://${CP}/x`, { cacheFile: link }));
  await u.load();
  assert.match(u.state().cacheError, /symbolic link/);
  ({ u } = updater(`https://${CP}/x`, { cacheFile: file }));
  await u.load();
  assert.equal(u.state().version, 9, "the same file, private, is read");
  ({ u } = updater(`https://${CP}/x`, { cacheFile: file, minVersion: 10 }));
  await u.load();
  assert.match(u.state().cacheError, /rollback/);
  assert.equal(u.state().version, 0);
});
