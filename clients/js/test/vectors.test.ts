// Runs the cross-language bundle vectors (clients/testdata/vectors).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compactVerify, importJWK } from "jose";
import { parseJSON } from "../src/core/json.js";
import { parsePolicy, ruleJSON } from "../src/core/policy.js";
import { BundleError, BundleState, parseKeys } from "../src/core/bundle.js";

const dir = process.env.RAMPART_VECTORS ?? join(import.meta.dirname, "..", "..", "..", "testdata", "vectors");
const file = JSON.parse(readFileSync(join(dir, "bundles.json"), "utf8"));
const keys = parseKeys(JSON.stringify(file.keys));
const embedded = parsePolicy(parseJSON(JSON.stringify(file.embedded_policy)));

for (const c of file.cases) {
  test(`bundle vector ${c.name}`, async (t) => {
    if (c.unsupported?.js) {
      t.skip(`unsupported by this client: ${c.unsupported.js}`);
      return;
    }
    const st = new BundleState(embedded, keys, file.name, file.min_version);
    if (c.floor) assert.equal(st.load(c.floor, c.now), "", "the vector's floor must load");
    const input: string = c.oversize ? c.oversize.prefix + "A".repeat(c.oversize.length - c.oversize.prefix.length) : c.jws;
    let got: { result: string; error?: string };
    try {
      got = st.offer(input, c.now);
    } catch (e) {
      if (!(e instanceof BundleError)) throw e;
      got = { result: "refuse", error: e.kind };
    }
    assert.deepEqual(got.result === "refuse" ? got : { result: got.result }, c.expect.result === "refuse" ? { result: "refuse", error: c.expect.error } : { result: c.expect.result });
    assert.equal(st.active?.version ?? 0, c.expect.version, "version in effect");
    assert.deepEqual(st.policy().rules.map(ruleJSON), c.expect.effective_domains, "effective domains");
    // jose as an oracle: what this client accepts, jose verifies too.
    if (c.expect.result !== "refuse") {
      const kid = JSON.parse(Buffer.from(input.split(".")[0]!, "base64url").toString()).kid;
      const jwk = file.keys.keys.find((k: { kid: string }) => k.kid === kid);
      await compactVerify(input, await importJWK(jwk, jwk.alg));
    }
  });
}
