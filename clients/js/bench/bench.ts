// Benchmarks in Go's format (benchstat reads them): npm run bench.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseJSON } from "../src/core/json.js";
import { parsePolicy } from "../src/core/policy.js";
import { parseKeys, verifyBundle } from "../src/core/bundle.js";

const dir = process.env.RAMPART_VECTORS ?? join(import.meta.dirname, "..", "..", "..", "testdata", "vectors");
const file = JSON.parse(readFileSync(join(dir, "bundles.json"), "utf8"));
const keys = parseKeys(JSON.stringify(file.keys));
parsePolicy(parseJSON(JSON.stringify(file.embedded_policy)));

function bench(name: string, f: () => void): void {
  for (let i = 0; i < 50; i++) f(); // warm up
  let n = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    const ns = Number(process.hrtime.bigint() - t0);
    if (ns >= 1e9) {
      console.log(`Benchmark${name} \t${n}\t${(ns / n).toFixed(0)} ns/op`);
      return;
    }
    n = Math.min(n * 100, Math.max(n + 1, Math.ceil((n * 1.2e9) / Math.max(ns, 1))));
  }
}

const byName = (n: string) => file.cases.find((c: { name: string }) => c.name === n).jws as string;
const runs = Number(process.env.BENCH_COUNT ?? 6);
for (let r = 0; r < runs; r++) {
  bench("VerifyBundleES256", () => verifyBundle(byName("valid-es256"), keys, file.cases[0].now));
  bench("VerifyBundleEdDSA", () => verifyBundle(byName("valid-eddsa"), keys, file.cases[0].now));
  bench("ParseStrictJSON", () => parseJSON(JSON.stringify(file.embedded_policy)));
}
