// The strict JSON reader: RFC 8259 as JSON.parse reads it, but refusing
// duplicate member names, and keeping numbers as written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JsonError, JsonNumber, JsonValue, parseJSON, stringify } from "../src/core/json.js";

function plain(v: JsonValue): unknown {
  if (v instanceof JsonNumber) return Number(v.text);
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  return v;
}

test("agrees with JSON.parse on valid input", () => {
  for (const s of ['{"a":[1,-2.5e3,true,false,null,"x\\u00e9\\ud83d\\ude00\\n"]}', "[]", "{}", ' \t\n"s" ', "0", "-0.0", '{"":{"":[]}}']) {
    assert.deepEqual(plain(parseJSON(s)), JSON.parse(s), s);
  }
});

test("refuses what RFC 8259 refuses, and duplicate names", () => {
  for (const s of ['{"a":1,"a":2}', '{"a":1,}', "[1,]", "01", "1.", ".5", "+1", "'a'", '{"a" 1}', "/*c*/1", "1 2", '"\u0001"', '"\\x"', '"\\ud800"', "nul", "", "[", '{"a":1', "NaN", "Infinity", "-"]) {
    assert.throws(() => parseJSON(s), JsonError, JSON.stringify(s));
  }
});

test("integers are told from other numbers", () => {
  assert.equal((parseJSON("3") as JsonNumber).isInteger(), true);
  for (const s of ["3.0", "3e0", "-0.5"]) assert.equal((parseJSON(s) as JsonNumber).isInteger(), false, s);
});

test("random documents round-trip and match JSON.parse", () => {
  let seed = 12345;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const gen = (d: number): unknown => {
    switch (d > 3 ? rnd(4) : rnd(6)) {
      case 0: return rnd(2) === 0;
      case 1: return rnd(1000) - 500;
      case 2: return String.fromCharCode(...Array.from({ length: rnd(6) }, () => rnd(0x2fff) + 1)).replace(/[\ud800-\udfff]/g, "x");
      case 3: return null;
      case 4: return Array.from({ length: rnd(4) }, () => gen(d + 1));
      default: return Object.fromEntries(Array.from({ length: rnd(4) }, (_, i) => ["k" + i + rnd(9), gen(d + 1)]));
    }
  };
  for (let i = 0; i < 2000; i++) {
    const v = gen(0);
    const s = JSON.stringify(v);
    const parsed = parseJSON(s);
    assert.deepEqual(plain(parsed), JSON.parse(s));
    assert.deepEqual(JSON.parse(stringify(parsed)), JSON.parse(s));
    // Truncating a document never yields a value (but for numbers and literals that stay valid).
    const cut = s.slice(0, Math.max(0, s.length - 1 - rnd(3)));
    let ok = true;
    try { JSON.parse(cut); } catch { ok = false; }
    if (!ok) assert.throws(() => parseJSON(cut), JsonError);
  }
});

test("randomly mutated documents: accepted exactly when JSON.parse accepts them, but for duplicates and lone surrogates", () => {
  let seed = 987654321;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const alphabet = '{}[]:,"\\ \n\t0123456789-+.eEtrufalsn/ux\u00e9\ud83d\ude00abcdef';
  const docs = ['{"a":[1,2,{"b":null}],"c":"d\\u00e9"}', '[true,false,null,-0.5e+3,"x"]', '{"k1":{"k2":{"k3":[]}},"k4":"v"}', '{"version":1,"domains":[{"domain":"a.example","pins":["sha256/x"]}]}'];
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    let s = docs[rnd(docs.length)]!;
    for (let m = 1 + rnd(3); m > 0; m--) {
      const at = rnd(s.length + 1);
      const op = rnd(3);
      const c = alphabet[rnd(alphabet.length)]!;
      s = op === 0 ? s.slice(0, at) + c + s.slice(at) : op === 1 ? s.slice(0, at) + s.slice(at + 1) : s.slice(0, at) + c + s.slice(at + 1);
    }
    let want: unknown;
    let ok = true;
    try { want = JSON.parse(s); } catch { ok = false; }
    let got: JsonValue | undefined;
    let err: Error | undefined;
    try { got = parseJSON(s); } catch (e) { err = e as Error; }
    if (got !== undefined) {
      accepted++;
      assert.ok(ok, `accepted what JSON.parse refuses: ${JSON.stringify(s)}`);
      assert.deepEqual(plain(got), want, s);
    } else {
      assert.ok(err instanceof JsonError, `threw something else than JsonError for ${JSON.stringify(s)}: ${err}`);
      if (ok) assert.match(err.message, /appears twice|surrogate/, `refused what JSON.parse accepts: ${JSON.stringify(s)}: ${err.message}`);
    }
  }
  assert.ok(accepted > 100, `some mutants are valid JSON (${accepted})`);
});

test("duplicate member names are refused at any depth, and names compare exactly", () => {
  assert.throws(() => parseJSON('{"a":{"b":1,"b":2}}'), /appears twice/);
  assert.throws(() => parseJSON('[{"x":1},{"y":1,"y":1}]'), /appears twice/);
  assert.throws(() => parseJSON('{"\\u0061":1,"a":2}'), /appears twice/, "escapes are decoded before comparing");
  assert.doesNotThrow(() => parseJSON('{"a":1,"A":2}'));
  assert.throws(() => parseJSON("[".repeat(100) + "]".repeat(100)), /too deep/);
});
