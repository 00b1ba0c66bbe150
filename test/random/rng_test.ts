import assert from "node:assert/strict";
import { Rng } from "@lib/random";

Deno.test("Rng is deterministic per seed and differs across seeds", () => {
  const a = new Rng(7), b = new Rng(7), c = new Rng(8);
  const xa = Array.from({ length: 16 }, () => a.nextUint32());
  const xb = Array.from({ length: 16 }, () => b.nextUint32());
  const xc = Array.from({ length: 16 }, () => c.nextUint32());
  assert.deepEqual(xa, xb);
  assert.notDeepEqual(xa, xc);
});

Deno.test("Rng state round-trips through JSON and resumes the same stream", () => {
  const a = new Rng(123);
  for (let i = 0; i < 10; i++) a.uniform();
  const saved = JSON.parse(JSON.stringify(a.getState()));
  const next = [a.uniform(), a.normal(), a.int(0, 10)];
  const b = new Rng(saved);
  assert.deepEqual([b.uniform(), b.normal(), b.int(0, 10)], next);
});

Deno.test("uniform, int and normal have the right moments", () => {
  const r = new Rng(1);
  const n = 200_000;
  let s = 0, s2 = 0, u = 0;
  const counts = new Array(7).fill(0);
  for (let i = 0; i < n; i++) {
    const x = r.normal();
    s += x;
    s2 += x * x;
    u += r.uniform();
    counts[r.int(3, 10) - 3]++;
  }
  assert.ok(Math.abs(s / n) < 0.01);
  assert.ok(Math.abs(s2 / n - 1) < 0.02);
  assert.ok(Math.abs(u / n - 0.5) < 0.005);
  for (const c of counts) assert.ok(Math.abs(c / n - 1 / 7) < 0.005);
});

Deno.test("truncatedNormal stays in range with the right mean", () => {
  const r = new Rng(2);
  let s = 0;
  const n = 50_000;
  for (let i = 0; i < n; i++) {
    const x = r.truncatedNormal(0.45, 0.25, 0.4, 1.0);
    assert.ok(x >= 0.4 && x <= 1.0);
    s += x;
  }
  // mean of N(0.45, 0.25) truncated to [0.4, 1]: 0.45 + 0.25 * (phi(a) - phi(b)) / (Phi(b) - Phi(a))
  // with a = -0.2, b = 2.2: (0.39104 - 0.03547) / (0.98610 - 0.42074) = 0.62893
  assert.ok(Math.abs(s / n - (0.45 + 0.25 * 0.62893)) < 0.005, `mean ${s / n}`);
});

Deno.test("permutation is a permutation; fork is independent and reproducible", () => {
  const r = new Rng(3);
  const p = Array.from(r.permutation(100)).sort((a, b) => a - b);
  assert.deepEqual(p, Array.from({ length: 100 }, (_, i) => i));
  const f1 = new Rng(5).fork("mask"), f2 = new Rng(5).fork("mask"), g = new Rng(5).fork("aug");
  const a = f1.nextUint32();
  assert.equal(a, f2.nextUint32());
  assert.notEqual(a, g.nextUint32());
});

Deno.test("bad seeds and states are refused", () => {
  assert.throws(() => new Rng(NaN), RangeError);
  assert.throws(() => new Rng([0, 0, 0, 0]), TypeError);
  assert.throws(() => new Rng(1).int(5, 5), RangeError);
});

Deno.test("fillThreshold makes the same draws as nextUint32, in order, and leaves the same state", () => {
  for (const seed of [0, 1, 0xdeadbeef, -7]) {
    const a = new Rng(seed).fork("x"), b = new Rng(seed).fork("x");
    for (const [n, threshold] of [[1, 2 ** 31], [1000, 0.1 * 2 ** 32], [4097, 2 ** 32], [5, 0]]) {
      const out = new Float32Array(n);
      a.fillThreshold(out, threshold, -1.5, 2.25);
      const want = Float32Array.from({ length: n }, () => b.nextUint32() < threshold ? -1.5 : 2.25);
      assert.deepEqual(out, want, `seed ${seed}, n ${n}`);
      assert.deepEqual(a.getState(), b.getState());
    }
  }
});
