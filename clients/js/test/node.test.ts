// The Node integration on a local TLS server with the vectors'
// certificates: connections, pooled sockets and TLS sessions made under old
// pins do not outlive them; configurations that cannot be pinned are refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import tls from "node:tls";
import { parsePolicy, type Policy } from "../src/core/policy.js";
import { PinMismatchError } from "../src/core/verify.js";
import { PinConfigError, PinVerifier, PolicyChangedError, pinnedAgent, pinnedConnect } from "../src/node/verifier.js";
import { get, loopback, readVectors } from "./helpers.js";

const pki = readVectors("pki.json");
const C = pki.certificates as Record<string, { pem: string; spki_pin: string; cert_pin: string; key_pem?: string }>;
const ca = [C["legit-root"]!.pem, C["rogue-root"]!.pem];
const API = "api.rampart.example";

function policy(host: string, pins: string[], mode = "enforce"): Policy {
  return parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: host, mode, pins }] }));
}
const legitPins = [C["legit-leaf"]!.spki_pin, C["renewed-leaf"]!.spki_pin];
const roguePins = [C["rogue-leaf"]!.spki_pin, C["renewed-leaf"]!.spki_pin];

/** An https server presenting the legit chain; /slow answers when release() is called. */
async function server(chain = ["legit-leaf", "legit-int"]) {
  let release: () => void = () => undefined;
  let arrived: () => void = () => undefined;
  const gotSlow = new Promise<void>((r) => (arrived = r));
  const s = https.createServer({ cert: chain.map((n) => C[n]!.pem).join(""), key: C[chain[0]!]!.key_pem }, (req, res) => {
    if (req.url === "/slow") {
      arrived();
      release = () => res.end("slow");
      return;
    }
    res.end("ok");
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  return { url: (p = "/") => `https://${API}:${port}${p}`, port, gotSlow, release: () => release(), close: () => { s.closeAllConnections(); s.close(); } };
}

test("a busy connection the new policy refuses is closed, its request fails", async () => {
  const srv = await server();
  const v = new PinVerifier({ policy: policy(API, legitPins), logger: null, agentOptions: { ca, lookup: loopback } });
  try {
    const pending = get(srv.url("/slow"), v.agent).then(() => null, (e: Error) => e);
    await srv.gotSlow;
    v.setPolicy(policy(API, roguePins));
    const err = await pending;
    assert.ok(err instanceof PolicyChangedError, `want the in-flight request to fail, got ${err}`);
  } finally {
    srv.close();
  }
});

test("a busy connection the new policy accepts keeps working", async () => {
  const srv = await server();
  const v = new PinVerifier({ policy: policy(API, legitPins), logger: null, agentOptions: { ca, lookup: loopback } });
  try {
    const pending = get(srv.url("/slow"), v.agent);
    await srv.gotSlow;
    v.setPolicy(policy(API, [C["legit-int"]!.spki_pin, C["renewed-leaf"]!.spki_pin]));
    srv.release();
    assert.equal((await pending).body, "slow");
  } finally {
    srv.close();
  }
});

test("a connection to a host that a new policy pins is checked then", async () => {
  const srv = await server();
  const v = new PinVerifier({ policy: policy("other.rampart.example", legitPins), logger: null, agentOptions: { ca, lookup: loopback } });
  try {
    const pending = get(srv.url("/slow"), v.agent).then(() => null, (e: Error) => e);
    await srv.gotSlow;
    v.setPolicy(parsePolicy(JSON.stringify({ version: 1, domains: [{ domain: "other.rampart.example", pins: legitPins }, { domain: API, pins: roguePins }] })));
    assert.ok((await pending) instanceof PolicyChangedError);
  } finally {
    srv.close();
  }
});

test("pooled sockets are reused under one policy, never across a refusing change", async () => {
  const srv = await server();
  const v = new PinVerifier({ policy: policy(API, legitPins), logger: null, agentOptions: { ca, lookup: loopback } });
  try {
    const agent = v.agent;
    assert.equal((await get(srv.url(), agent)).reused, false);
    assert.equal((await get(srv.url(), agent)).reused, true, "keep-alive reuse under the same policy");
    v.setPolicy(policy(API, roguePins));
    for (const a of [agent, v.agent]) {
      const err = await get(srv.url(), a).then(() => null, (e: Error) => e);
      assert.ok(err instanceof PinMismatchError, `want a fresh handshake refused by the pins, got ${err}`);
    }
  } finally {
    srv.close();
  }
});

test("TLS sessions: resumed under the same policy, never across a refusing change", async () => {
  const srv = await server();
  const v = new PinVerifier({ policy: policy(API, legitPins), logger: null });
  const connect = (session?: Buffer) =>
    new Promise<{ reused: boolean; session?: Buffer; err?: Error }>((resolve) => {
      let got: Buffer | undefined;
      const s = v.connect({ host: API, servername: API, port: srv.port, ca, lookup: loopback, session, maxVersion: "TLSv1.2" });
      s.on("session", (b: Buffer) => (got = b));
      s.once("secureConnect", () => {
        const reused = s.isSessionReused();
        setTimeout(() => {
          resolve({ reused, session: got });
          s.end();
        }, 20);
      });
      s.once("error", (err) => resolve({ reused: false, err }));
    });
  try {
    const first = await connect();
    assert.ok(first.session, "a session to resume");
    const again = await connect(first.session);
    assert.equal(again.err, undefined);
    assert.equal(again.reused, true, "resumed under the same policy");
    v.setPolicy(policy(API, [C["legit-int"]!.spki_pin, C["renewed-leaf"]!.spki_pin]));
    assert.equal((await connect(first.session)).reused, true, "still resumed: the new policy accepts the chain");
    v.setPolicy(policy(API, roguePins));
    const after = await connect(first.session);
    assert.equal(after.reused, false, "not resumed after a refusing change");
    assert.ok(after.err instanceof PinMismatchError, `refused by a full handshake: ${after.err}`);
    const foreign = new PinVerifier({ policy: policy(API, legitPins), logger: null });
    const other = await new Promise<boolean>((resolve) => {
      const s = foreign.connect({ host: API, servername: API, port: srv.port, ca, lookup: loopback, session: first.session, maxVersion: "TLSv1.2" });
      s.once("secureConnect", () => {
        resolve(s.isSessionReused());
        s.end();
      });
      s.once("error", () => resolve(false));
    });
    assert.equal(other, false, "a session another verifier made is not resumed");
  } finally {
    srv.close();
  }
});

test("getPeerCertificate still shows the whole chain after the pin check", async () => {
  const srv = await server();
  try {
    const s = pinnedConnect({ policy: policy(API, legitPins), logger: null, host: API, servername: API, port: srv.port, ca, lookup: loopback });
    await new Promise<void>((r, j) => { s.once("secureConnect", () => r()); s.once("error", j); });
    const names: string[] = [];
    const seen = new Set<unknown>();
    for (let c: tls.DetailedPeerCertificate | undefined = s.getPeerCertificate(true); c && !seen.has(c); c = c.issuerCertificate) {
      seen.add(c);
      names.push(c.subject.CN);
    }
    assert.deepEqual(names, ["api.rampart.example", "Rampart Vectors Issuing CA", "Rampart Vectors Root"]);
    assert.equal((s.getPeerCertificate() as Partial<tls.DetailedPeerCertificate>).issuerCertificate, undefined);
    assert.equal(s.getPeerX509Certificate()?.subject.includes("api.rampart.example"), true);
    s.end();
  } finally {
    srv.close();
  }
});

test("configurations that cannot be pinned are refused", () => {
  const p = policy(API, legitPins);
  assert.throws(() => pinnedConnect({ policy: p, host: API, port: 1, rejectUnauthorized: false }), PinConfigError);
  assert.throws(() => pinnedConnect({ policy: p, host: API, port: 1, checkServerIdentity: () => undefined }), PinConfigError);
  assert.throws(() => pinnedConnect({ host: API, port: 1 } as never), PinConfigError);
  const agent = pinnedAgent({ policy: p, ca, lookup: loopback });
  assert.ok(agent instanceof https.Agent);
  agent.destroy();
});

test("the host name is checked by Node before the pins", async () => {
  const srv = await server();
  const v = new PinVerifier({ policy: policy("other.rampart.example", legitPins), logger: null, agentOptions: { ca, lookup: loopback } });
  try {
    const err = await get(`https://other.rampart.example:${srv.port}/`, v.agent).then(() => null, (e: Error) => e);
    assert.equal((err as NodeJS.ErrnoException | null)?.code, "ERR_TLS_CERT_ALTNAME_INVALID");
  } finally {
    srv.close();
  }
});
